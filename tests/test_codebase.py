"""What the code promises about itself: every error of one of two kinds, every retry bounded."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import pytest

import shared
from shared.errors import CONFLICT_ATTEMPTS, BridgeError, Contention, TerminalError, TransientError


def _modules() -> list:
    return [
        importlib.import_module(m.name)
        for m in pkgutil.walk_packages(shared.__path__, "shared.")
        if not m.name.endswith("__main__")
    ]


def test_every_error_the_bridge_defines_is_transient_or_terminal() -> None:
    """dlt's pattern: a caller can tell, without knowing the class, whether trying again helps."""
    defined = {
        cls
        for module in _modules()
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, BaseException) and cls.__module__ == module.__name__
    }
    assert len(defined) > 15, sorted(c.__name__ for c in defined)
    kinds = (TransientError, TerminalError)
    # WorkerKilled (the local queue host, never deployed) stands in for the host killing a worker:
    # a BaseException on purpose, so that no handler of the bridge's catches it.
    odd = sorted(
        f"{c.__module__}.{c.__name__}"
        for c in defined
        if c not in (BridgeError, *kinds) and not issubclass(c, kinds) and c.__name__ != "WorkerKilled"
    )
    assert not odd, f"neither transient nor terminal: {odd}"


@pytest.mark.integration
def test_a_conditional_write_that_keeps_losing_gives_up_in_plain_words(stack, monkeypatch) -> None:
    lake = stack.bridge().lake
    attempts = []

    def always_loses(self, relative, document, **kwargs) -> bool:  # another writer always first
        attempts.append(relative)
        return False

    monkeypatch.setattr(type(lake), "write_json", always_loses)
    with pytest.raises(Contention) as gave_up:
        lake.write_json_forward("_manifests/latest.json", {"n": 1}, order=lambda d: d["n"])
    assert len(attempts) == CONFLICT_ATTEMPTS
    assert "other writers kept writing it first" in str(gave_up.value) and "\n" not in str(gave_up.value)


def test_the_packages_map_names_every_module_and_nothing_else() -> None:
    """shared/__init__.py's map is how a newcomer finds a stage's code: every module of the tree in
    it (a folder entry such as ``demo/`` stands for all of that folder), and no name that is gone."""
    tree = {
        m.name.removeprefix("shared.").replace(".", "/")
        for m in pkgutil.walk_packages(shared.__path__, "shared.")
        if not m.ispkg and not m.name.endswith("__main__")
    }
    mapped: set[str] = set()
    for line in (shared.__doc__ or "").splitlines():
        if not line.startswith("    ") or line.startswith("     "):  # a name, not a heading or a description
            continue
        names = line.strip().split("  ")[0]
        mapped |= {n.strip() for n in names.split(",") if n.strip()}
    folders = {n for n in mapped if n.endswith("/")}
    covered = {m for m in tree if m in mapped or any(m.startswith(f) for f in folders)}
    assert tree - covered == set(), "modules missing from the map in shared/__init__.py"
    stale = {n for n in mapped - tree - folders if not any(m.startswith(n + "/") for m in tree)}
    assert stale == set(), "names in the map with no module"


def test_every_type_ignore_says_why() -> None:
    """``make lint`` type-checks shared/ strictly; what it is told to ignore carries its reason beside it."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    silent = [
        f"{path.relative_to(root)}:{number}"
        for folder in ("shared", "bench")
        for path in (root / folder).rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "type: ignore" in line and not re.search(r"type: ignore\[[a-z-, ]+\]  # \S", line)
    ]
    assert silent == [], "a type: ignore without an error code and a reason"
