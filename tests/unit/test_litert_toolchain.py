"""The LiteRT toolchain: where the controller finds it (controller/config.py) and how
scripts/bootstrap.sh + scripts/tflite-venv.sh install it. No real toolchain is needed: the
virtualenvs are directories in tmp_path, the interpreters fakes."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from collections.abc import Iterable
from pathlib import Path

import pytest

from controller.config import (
    INCOMPLETE_MARKER,
    ToolchainSearch,
    build_config,
    discover_onnx2tf,
    load_config,
)

REPO = Path(__file__).resolve().parents[2]


def _venv(base: Path, *, incomplete: bool = False) -> Path:
    python = base / ".venv-tflite" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\n")
    if incomplete:
        (base / ".venv-tflite" / INCOMPLETE_MARKER).write_text("")
    return python


def _search(
    tmp_path: Path, with_onnx2tf: Iterable[Path | str] = (), *, checkout: bool = True
) -> ToolchainSearch:
    """A process running from checkout tmp/repo, in the virtualenv tmp/envs/.venv, whose own
    interpreter is tmp/envs/.venv/bin/python; ``with_onnx2tf`` are the Pythons that import it."""
    importable = {str(p) for p in with_onnx2tf}
    return ToolchainSearch(
        interpreter=tmp_path / "envs" / ".venv" / "bin" / "python",
        venv=tmp_path / "envs" / ".venv",
        checkout=tmp_path / "repo" if checkout else None,
        has_onnx2tf=lambda python: python in importable,
    )


def test_flag_then_environment_then_file_then_discovery(tmp_path: Path) -> None:
    found = _venv(tmp_path / "repo")
    search = _search(tmp_path, [found, "/flag/python", "/env/python", "/file/python"])
    conf = tmp_path / "c.toml"
    conf.write_text('[controller]\nonnx2tf_python = "/file/python"\n')
    env = {"EDGEFLEET_ONNX2TF_PYTHON": "/env/python"}
    flag = {"onnx2tf_python": "/flag/python"}

    def chosen(flags: dict[str, str], env: dict[str, str], file: Path | None) -> tuple[str, str]:
        loaded = load_config(flags, env, file, toolchain=search)
        assert loaded.config.onnx2tf_python == loaded.onnx2tf.python
        return loaded.onnx2tf.python, loaded.onnx2tf.origin

    assert chosen(flag, env, conf) == ("/flag/python", "--onnx2tf-python")
    assert chosen({}, env, conf) == ("/env/python", "EDGEFLEET_ONNX2TF_PYTHON")
    assert chosen({}, {}, conf) == ("/file/python", f"config file {conf}")
    assert chosen({}, {}, None) == (str(found), ".venv-tflite in the project checkout")
    empty = tmp_path / "empty.toml"  # "" (as in deploy/controller.example.toml) = discover
    empty.write_text('[controller]\nonnx2tf_python = ""\n')
    assert chosen({}, {"EDGEFLEET_ONNX2TF_PYTHON": ""}, empty)[0] == str(found)


def test_checkout_then_next_to_the_venv_then_own_interpreter(tmp_path: Path) -> None:
    own = tmp_path / "envs" / ".venv" / "bin" / "python"
    beside = _venv(tmp_path / "envs")
    in_checkout = _venv(tmp_path / "repo")
    search = _search(tmp_path, [own, beside, in_checkout])
    assert discover_onnx2tf("", "", search).python == str(in_checkout)

    search = _search(tmp_path, [own, beside], checkout=False)
    choice = discover_onnx2tf("", "", search)
    assert (choice.python, choice.origin) == (
        str(beside),
        ".venv-tflite next to the controller's virtualenv",
    )

    choice = discover_onnx2tf("", "", _search(tmp_path, [own]))
    assert (choice.python, choice.origin) == (str(own), "the controller's own environment")
    assert choice.passed_over == (
        f"{in_checkout} cannot import onnx2tf",
        f"{beside} cannot import onnx2tf",
    )


def test_an_incomplete_venv_is_passed_over(tmp_path: Path) -> None:
    broken = _venv(tmp_path / "repo", incomplete=True)
    choice = discover_onnx2tf("", "", _search(tmp_path, [broken]))
    assert (choice.python, choice.usable) == ("", False)
    assert choice.passed_over == (
        f"{broken.parents[1]} is incomplete (its install did not finish)",
    )
    text = choice.describe()
    assert "LiteRT variants will be skipped" in text and "scripts/bootstrap.sh" in text


def test_nothing_found_says_how_to_get_it(tmp_path: Path) -> None:
    choice = discover_onnx2tf("", "", _search(tmp_path))
    assert (choice.python, choice.usable, choice.passed_over) == ("", False, ())
    assert choice.describe().startswith("LiteRT toolchain not found: LiteRT variants")
    assert "EDGEFLEET_ONNX2TF_PYTHON" in choice.describe()


def test_a_named_python_is_kept_even_without_onnx2tf(tmp_path: Path) -> None:
    _venv(tmp_path / "repo")  # not used: the flag wins even when it is wrong
    loaded = load_config({"onnx2tf_python": "/no/onnx2tf"}, {}, toolchain=_search(tmp_path))
    assert loaded.config.onnx2tf_python == "/no/onnx2tf" and not loaded.onnx2tf.usable
    assert "cannot import onnx2tf: LiteRT variants will be skipped" in loaded.onnx2tf.describe()


def test_one_venv_serving_as_checkout_and_sibling_is_tried_once(tmp_path: Path) -> None:
    _venv(tmp_path / "repo")
    search = ToolchainSearch(
        interpreter=tmp_path / "repo" / ".venv" / "bin" / "python",
        venv=tmp_path / "repo" / ".venv",
        checkout=tmp_path / "repo",
        has_onnx2tf=lambda python: False,
    )
    assert len(search.venv_candidates()) == 1
    assert len(discover_onnx2tf("", "", search).passed_over) == 1


def test_a_relative_python_becomes_absolute_and_no_search_means_no_discovery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = build_config({"onnx2tf_python": ".venv-tflite/bin/python"}, {})
    assert config.onnx2tf_python == str(tmp_path / ".venv-tflite" / "bin" / "python")
    assert build_config({"onnx2tf_python": "python3.11"}, {}).onnx2tf_python == "python3.11"
    _venv(tmp_path / "repo")
    loaded = load_config({}, {})  # no ToolchainSearch: the library default ("" = own env)
    assert loaded.config.onnx2tf_python == "" and "not searched" in loaded.onnx2tf.describe()


def test_the_tflite_extra_lists_the_pins_the_venv_script_installs() -> None:
    lines = (REPO / "scripts" / "tflite-requirements.txt").read_text().splitlines()
    pins = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]["tflite"]
    assert extra == pins
    assert all("==" in pin for pin in pins)
    assert "tflite-requirements.txt" in (REPO / "scripts" / "tflite-venv.sh").read_text()


# --- scripts/bootstrap.sh and scripts/tflite-venv.sh, run against a copy with fake tools ---

FAKE_PYTHON = """#!/usr/bin/env bash
# A stand-in interpreter: makes "virtualenvs", logs pip, answers -c probes.
echo "$0 $*" >>"$FAKE_LOG"
if [ "$1" = -m ] && [ "$2" = venv ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python"; fi
if [ "$1" = -m ] && [ "$2" = pip ]; then exit "${FAKE_PIP_RC:-0}"; fi
exit 0
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "scripts").mkdir(parents=True)
    for name in ("bootstrap.sh", "tflite-venv.sh", "tflite-requirements.txt"):
        shutil.copy(REPO / "scripts" / name, root / "scripts" / name)
    (root / "t10k-images-idx3-ubyte.gz").write_bytes(b"")  # Fashion-MNIST "installed"
    fakes = tmp_path / "bin"
    fakes.mkdir()
    for path in (fakes / "python3", fakes / "mosquitto", root / ".venv" / "bin" / "python"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(FAKE_PYTHON)
        path.chmod(0o755)
    shutil.copy(fakes / "python3", root / ".venv" / "bin" / "pip")
    return root


def _bootstrap(project: Path, **env: str) -> subprocess.CompletedProcess[str]:
    fakes = project.parent / "bin"
    full_env = {
        "PATH": f"{fakes}:/usr/bin:/bin",
        "FAKE_LOG": str(project / "log"),
        "PYTHON": str(fakes / "python3"),
        "FASHION_MNIST_DIR": str(project),  # "installed": no apt-get from a unit test
        "EDGEFLEET_SKIP_TRITON": "1",  # the Triton server's venv is not what these tests test
        **env,
    }
    (project / "log").write_text("")
    return subprocess.run(
        ["bash", str(project / "scripts" / "bootstrap.sh")],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _pip_runs(project: Path) -> list[str]:
    return [
        ln
        for ln in (project / "log").read_text().splitlines()
        if "-tflite/" in ln and " pip " in ln
    ]


def test_bootstrap_skips_litert_when_asked(project: Path) -> None:
    done = _bootstrap(project, EDGEFLEET_SKIP_LITERT="1")
    assert done.returncode == 0, done.stderr
    assert "LiteRT variants will be skipped" in done.stderr
    assert not (project / ".venv-tflite").exists()
    assert "install -q -e .[dev,train]" in (project / "log").read_text()


def test_bootstrap_installs_litert_once_then_is_quick(project: Path) -> None:
    venv = project / ".venv-tflite"
    done = _bootstrap(project)
    assert done.returncode == 0, done.stderr
    assert any("-r scripts/tflite-requirements.txt" in ln for ln in _pip_runs(project))
    assert (venv / ".edgefleet-requirements.txt").read_text() == (
        project / "scripts" / "tflite-requirements.txt"
    ).read_text()
    assert not (venv / INCOMPLETE_MARKER).exists()

    again = _bootstrap(project)
    assert again.returncode == 0 and "up to date" in again.stderr
    assert _pip_runs(project) == []

    with (project / "scripts" / "tflite-requirements.txt").open("a") as f:
        f.write("extra-pin==1.0\n")
    changed = _bootstrap(project)
    assert changed.returncode == 0 and _pip_runs(project) != []


def test_a_failed_litert_install_fails_bootstrap_and_is_never_used(project: Path) -> None:
    venv = project / ".venv-tflite"
    fresh = _bootstrap(project, FAKE_PIP_RC="1")
    assert fresh.returncode != 0 and "EDGEFLEET_SKIP_LITERT=1" in fresh.stderr
    assert not venv.exists()  # a virtualenv this run made is removed again

    assert _bootstrap(project).returncode == 0
    (project / "scripts" / "tflite-requirements.txt").write_text("changed==2.0\n")
    upgrade = _bootstrap(project, FAKE_PIP_RC="1")
    assert upgrade.returncode != 0 and "marked incomplete" in upgrade.stderr
    assert (venv / INCOMPLETE_MARKER).exists()  # an older venv stays, marked: the controller
    search = ToolchainSearch(  # passes it over even though its Python "imports" onnx2tf
        interpreter=Path("/nonexistent"),
        venv=None,
        checkout=project,
        has_onnx2tf=lambda python: python != "/nonexistent",
    )
    choice = discover_onnx2tf("", "", search)
    assert choice.python == "" and "is incomplete" in choice.passed_over[0]


def test_the_scripts_are_valid_bash() -> None:
    for name in ("bootstrap.sh", "tflite-venv.sh", "test.sh"):
        done = subprocess.run(["bash", "-n", str(REPO / "scripts" / name)], check=False)
        assert done.returncode == 0, name
    assert os.access(REPO / ".ci" / "run", os.R_OK)
