"""Human-readable summaries of a run manifest and of a plan, for the CLI and the demo."""

from __future__ import annotations

from typing import Any

from shared.model import Plan


def format_manifest(manifest: dict[str, Any]) -> str:
    """A per-dataset table of a run, then quarantined and failed files with their reasons."""
    lines = [
        f"run {manifest['run_id']}  mode={manifest['mode']}  status={manifest['status']}  "
        f"{manifest['duration_seconds']:.1f} s",
        f"{'layout':7} {'dataset':34} {'new':>6} {'bytes':>13} {'rows':>11} {'quar.':>5} "
        f"{'failed':>6} {'deferred':>8} {'present':>8}",
    ]
    for d in manifest["datasets"]:
        lines.append(
            f"{d['layout']:7} {d['dataset']:34} {d['published']:>6} {d['bytes']:>13,} {d['rows']:>11,} "
            f"{d['quarantined']:>5} {d['failed']:>6} {d['deferred']:>8} "
            f"{d['already_present'] + d['already_quarantined']:>8}"
        )
    t = manifest["totals"]
    lines.append(
        f"{'total':42} {t['published']:>6} {t['bytes']:>13,} {t['rows']:>11,} {t['quarantined']:>5} "
        f"{t['failed']:>6} {t['deferred']:>8} {t['already_present'] + t['already_quarantined']:>8}"
    )
    for f in manifest["files"]:
        if f["action"] == "quarantined":
            lines.append(f"quarantined {f['source_key']}: {f['reason']}")
        elif f["action"] == "failed":
            lines.append(f"FAILED (left for the next run) {f['source_key']}: {f['reason']}")
    unrecognized = manifest["unrecognized"]
    if unrecognized["count"]:
        lines.append(f"{unrecognized['count']} keys fit no Haltian layout and were not copied, e.g. "
                     + ", ".join(repr(k) for k in unrecognized["examples"][:5]))
    for t in manifest.get("tables", []):
        state = f"version {t['version']}" if t["version"] is not None else "no table yet"
        if t["added"] or t["removed"]:
            lines.append(f"delta {t['layout']}/{t['dataset']}: {state}, +{len(t['added'])} files, "
                         f"-{len(t['removed'])} files")
        for excluded in t["excluded"]:
            lines.append(f"delta {t['layout']}/{t['dataset']}: {excluded['source_key']} {excluded['reason']}")
        if t["error"]:
            lines.append(f"delta {t['layout']}/{t['dataset']}: NOT COMMITTED ({t['error']}); the next run retries")
    drift = [f for f in manifest["files"] if f["schema"] and f["schema"]["drift"] and f["action"] == "published"]
    for f in drift[:10]:
        lines.append(f"schema drift ({f['schema']['verdict']} against the {f['schema']['against']}) "
                     f"{f['source_key']}: " + "; ".join(f["schema"]["drift"]))
    return "\n".join(lines)


def plan_document(plan: Plan) -> dict[str, Any]:
    """A plan as JSON: what a run would copy, and why the rest is skipped."""
    return {
        "mode": plan.mode,
        "months": plan.months,
        "listed_objects": plan.listed_objects,
        "listed_prefixes": plan.listed_prefixes,
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


def format_plan(plan: Plan) -> str:
    doc = plan_document(plan)
    size = sum(i["size"] for i in doc["to_copy"])
    lines = [f"{plan.mode} plan{' for ' + ', '.join(plan.months) if plan.months else ''}: "
             f"{len(doc['to_copy']):,} files ({size:,} bytes) to copy, "
             f"{doc['already_present']:,} already in the lake, "
             f"{doc['already_quarantined']:,} already quarantined, "
             f"{plan.unrecognized:,} unrecognised keys"]
    lines += [f"  {i['reason']:7} {i['source_key']} ({i['size']:,} bytes)" for i in doc["to_copy"][:50]]
    if len(doc["to_copy"]) > 50:
        lines.append(f"  ... and {len(doc['to_copy']) - 50:,} more (use --json for the full list)")
    return "\n".join(lines)
