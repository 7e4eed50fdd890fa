"""Human-readable summaries of a run manifest and of a plan, for the CLI and the demo."""

from __future__ import annotations

from typing import Any

from shared.model import Plan
from shared.paths import TABLES, table_name


def format_manifest(manifest: dict[str, Any]) -> str:
    """A per-dataset table of a run, then quarantined and failed files with their reasons."""
    return "\n".join(_dataset_lines(manifest) + _drift_and_file_lines(manifest) + _table_lines(manifest))


def _dataset_lines(manifest: dict[str, Any]) -> list[str]:
    """The run, then one row per dataset and the totals."""
    lines = [
        f"run {manifest['run_id']}  mode={manifest['mode']}  status={manifest['status']}  "
        f"{manifest['duration_seconds']:.1f} s",
        f"{'layout':7} {'dataset':34} {'new':>6} {'bytes':>13} {'rows':>11} {'quar.':>5} "
        f"{'failed':>6} {'deferred':>8} {'present':>8}  table",
    ]
    for d in manifest["datasets"]:
        lines.append(
            f"{d['layout']:7} {d['dataset']:34} {d['published']:>6} {d['bytes']:>13,} {d['rows']:>11,} "
            f"{d['quarantined']:>5} {d['failed']:>6} {d['deferred']:>8} "
            f"{d['already_present'] + d['already_quarantined']:>8}  {TABLES}/{table_name(d['layout'], d['dataset'])}"
        )
    t = manifest["totals"]
    lines.append(
        f"{'total':42} {t['published']:>6} {t['bytes']:>13,} {t['rows']:>11,} {t['quarantined']:>5} "
        f"{t['failed']:>6} {t['deferred']:>8} {t['already_present'] + t['already_quarantined']:>8}"
    )
    return lines


def _drift_and_file_lines(manifest: dict[str, Any]) -> list[str]:
    """Schema drift per dataset, released, quarantined and failed files, and keys fitting no layout."""
    lines = []
    drift = manifest.get("schema_drift", [])
    breaking = {(d["layout"], d["dataset"]) for d in drift if d["verdict"] == "breaking"}
    for d in drift:
        name = f"{d['layout']}/{d['dataset']}"
        if d["verdict"] == "breaking":
            lines.append(
                f"BREAKING schema drift in {name} against the {d['against']} ({d['contract']}): "
                f"{d['files']} files quarantined: "
                + "; ".join(d["problems"])
                + f"; if Haltian changed the schema: python -m shared schema show {name}"
            )
        else:
            lines.append(
                f"{d['verdict']} schema drift in {name} against the {d['against']}: "
                f"{d['files']} files published: " + "; ".join(d["problems"])
            )
    for f in manifest["files"]:
        if f.get("released_from"):
            lines.append(f"released {f['source_key']} from {f['released_from']}")
        if (
            f["action"] == "quarantined"
            and (f["layout"], f["dataset"]) in breaking
            and f["schema"]
            and f["schema"]["verdict"] == "breaking"
        ):
            continue  # reported once for its dataset above
        if f["action"] == "quarantined":
            lines.append(f"quarantined {f['source_key']}: {f['reason']}")
        elif f["action"] == "failed":
            lines.append(f"FAILED (left for the next run) {f['source_key']}: {f['reason']}")
    unrecognized = manifest["unrecognized"]
    if unrecognized["count"]:
        lines.append(
            f"{unrecognized['count']} keys fit no Haltian layout and were not copied, e.g. "
            + ", ".join(repr(k) for k in unrecognized["examples"][:5])
        )
    return lines


def _table_lines(manifest: dict[str, Any]) -> list[str]:
    """What each table commit added, replaced, compacted or left out, and tables not committed."""
    lines = []
    for t in manifest.get("tables", []):
        state = f"version {t['version']}" if t["version"] is not None else "no table yet"
        if t["added"] or t["removed"] or t.get("compacted"):
            lines.append(
                f"table {t['table']}: {state}, rows of {len(t['added'])} source files added"
                + (f", of {len(t['removed'])} replaced" if t["removed"] else "")
                + (f", compacted {', '.join(t['compacted'])}" if t.get("compacted") else "")
            )
        for excluded in t["excluded"]:
            lines.append(f"table {t['table']}: {excluded['source_key']} {excluded['reason']}")
        if t["error"]:
            lines.append(f"table {t['table']}: NOT COMMITTED ({t['error']}); the next run retries")
    return lines


def _columns(columns: list[dict[str, Any]]) -> list[str]:
    return [
        f"    {c['name']:28} {c['type']}{'' if c['nullable'] else '  not null'}"
        + ("  (may be absent)" if c.get("may_be_absent") else "")
        for c in columns
    ]


def format_schema(document: dict[str, Any]) -> str:
    """``schema show``: the contract in force, the newest schema seen, and the difference."""
    contract = document["contract"]
    lines = [f"{document['dataset']}"]
    if contract is None:
        lines.append(
            "  contract: none (a dataset Haltian had not documented: judged against its first-seen schema)"
        )
    else:
        extent = "complete" if contract["complete"] else "partial"
        lines.append(f"  contract in force: {contract['version']} ({contract['origin']}, {extent})")
        if contract.get("accepted_at"):
            lines.append(
                f"    accepted {contract['accepted_at']} by {contract['accepted_by']}, "
                f"from {contract['based_on']['source_key']}"
            )
        lines += _columns(contract["columns"])
    if document.get("shipped_differs"):
        lines.append(f"  note: {document['shipped_differs']}")
    seen = document["newest_seen"]
    if seen is None:
        lines.append("  newest schema seen: none (no readable file of this dataset in the lake yet)")
    else:
        where = "in quarantine" if seen["quarantined"] else "published"
        lines.append(
            f"  newest schema seen: {seen['source_key']} ({where}, fingerprint {seen['fingerprint']})"
        )
        lines += _columns(seen["columns"])
        difference = document["difference"]
        lines.append(
            f"  difference: {difference['verdict']}"
            + (": " + "; ".join(difference["problems"]) if difference["problems"] else "")
            + (f" (new nullable columns: {', '.join(difference['added'])})" if difference["added"] else "")
        )
    pending = document.get("newest_quarantined")
    if pending is not None and (seen is None or pending["source_key"] != seen["source_key"]):
        lines.append(
            f"  newest quarantined schema: {pending['source_key']} (fingerprint {pending['fingerprint']})"
        )
        lines += _columns(pending["columns"])
        difference = document["quarantined_difference"]
        lines.append(
            f"  difference: {difference['verdict']}"
            + (": " + "; ".join(difference["problems"]) if difference["problems"] else "")
        )
    lines.append(f"  quarantined files: {document['quarantined_files']}")
    if any(
        d and d["verdict"] == "breaking"
        for d in (document["difference"], document.get("quarantined_difference"))
    ):
        lines.append(
            f"  to accept this schema: python -m shared schema accept {document['dataset']}, then "
            f"python -m shared quarantine release {document['dataset']}"
        )
    return "\n".join(lines)


def format_accepted(document: dict[str, Any]) -> str:
    if not document["changed"]:
        return f"{document['dataset']}: {document['message']}"
    previous = document["replaces"]
    was = f"{previous['version']} ({previous['origin']})" if previous else "no contract"
    difference = document["difference_from_previous"]
    changes = "; ".join(
        difference["problems"] + [f"new nullable column {name!r}" for name in difference["added"]]
    )
    return (
        f"{document['dataset']}: contract {document['version']} accepted from "
        f"{document['contract']['based_on']['source_key']} (was {was}; {changes or 'no column changes'}); "
        f"stored at {document['path']}. Next: python -m shared quarantine release {document['dataset']}"
    )


def format_quarantine(document: dict[str, Any]) -> str:
    lines = [
        f"{document['count']} files in quarantine"
        + (f" for {document['selection']}" if document["selection"] else "")
    ]
    for f in document["files"]:
        lines.append(f"  {f['path']}  ({f['kind']}, {f['bytes']:,} bytes): {f['reason']}")
    return "\n".join(lines)


def plan_document(plan: Plan, to_copy: int | None = None, to_copy_bytes: int | None = None) -> dict[str, Any]:
    """A plan as JSON: what a run would copy, and why the rest is skipped; ``to_copy`` and
    ``to_copy_bytes`` count the files to copy when ``plan.items`` holds only the first of them."""
    return {
        "mode": plan.mode,
        "months": plan.months,
        "listed_objects": plan.listed_objects,
        "listed_prefixes": plan.listed_prefixes,
        "to_copy_count": len(plan.items) if to_copy is None else to_copy,
        "to_copy_bytes": sum(i.source.size for i in plan.items) if to_copy_bytes is None else to_copy_bytes,
        "to_copy": [
            {
                "source_key": item.key.key,
                "size": item.source.size,
                "etag": item.source.etag,
                "layout": item.key.layout,
                "dataset": item.key.dataset,
                "reason": "changed" if item.replaces is not None else "new",
            }
            for item in plan.items
        ],
        "already_present": sum(plan.present.values()),
        "already_quarantined": sum(plan.quarantined.values()),
        "unrecognized": {"count": plan.unrecognized, "examples": plan.unrecognized_examples},
        "other_organization": plan.other_organization,
    }


def format_plan(plan: Plan, to_copy: int | None = None, to_copy_bytes: int | None = None) -> str:
    doc = plan_document(plan, to_copy, to_copy_bytes)
    lines = [
        f"{plan.mode} plan{' for ' + ', '.join(plan.months) if plan.months else ''}: "
        f"{doc['to_copy_count']:,} files ({doc['to_copy_bytes']:,} bytes) to copy, "
        f"{doc['already_present']:,} already in the lake, "
        f"{doc['already_quarantined']:,} already quarantined, "
        f"{plan.unrecognized:,} unrecognised keys"
    ]
    lines += [f"  {i['reason']:7} {i['source_key']} ({i['size']:,} bytes)" for i in doc["to_copy"][:50]]
    if doc["to_copy_count"] > 50:
        lines.append(f"  ... and {doc['to_copy_count'] - 50:,} more (use --json for the full list)")
    return "\n".join(lines)
