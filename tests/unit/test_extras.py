"""Extras keep heavy dependencies where they are used: scikit-learn only makes the digits
example (examples/digits/make_digits.py), so it is in the `train` extra, not the controller's
runtime, and an import-linter contract keeps every package from importing it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].strip().lower() for r in requirements}


def _closure(extra: str) -> set[str]:
    """Requirement names of an extra, following edgefleet[other] references."""
    extras = PYPROJECT["project"]["optional-dependencies"]
    names: set[str] = set()
    for req in extras[extra]:
        nested = re.fullmatch(r"edgefleet\[(\w+)\]", req.strip())
        names |= _closure(nested.group(1)) if nested else _names([req])
    return names


def test_scikit_learn_is_a_train_dependency_only() -> None:
    assert "scikit-learn" not in _names(PYPROJECT["project"]["dependencies"])
    assert "scikit-learn" not in _closure("controller")
    assert "scikit-learn" not in _closure("agent")
    assert "scikit-learn" in _closure("train")


def test_import_contract_forbids_sklearn_in_every_package() -> None:
    contracts = PYPROJECT["tool"]["importlinter"]["contracts"]
    covered = {
        source
        for c in contracts
        if c["type"] == "forbidden" and "sklearn" in c["forbidden_modules"]
        for source in c["source_modules"]
    }
    assert covered >= {"agent", "controller", "edgefleet"}


def test_only_the_digits_script_imports_sklearn() -> None:
    users = sorted(
        str(p.relative_to(REPO))
        for top in ("agent", "controller", "edgefleet", "bench", "examples", "scripts")
        for p in (REPO / top).rglob("*.py")
        if re.search(r"^\s*(from|import)\s+sklearn", p.read_text(errors="replace"), re.M)
    )
    assert users == ["examples/digits/make_digits.py"]
