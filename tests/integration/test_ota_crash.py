"""Fault injection: SIGKILL an updater child process at random instants, then recover.

The child installs two updates (v2, v3) over a committed v1 from a local source, with small
sleeps in every write and chunk so kills land in downloads, slot writes, activation and
probation. After each kill, ``SlotStore.recover()`` must hand back a slot whose files verify
and whose ONNX model loads in ONNX Runtime and computes what one of the versions computes.
``bench/bench_ota_crash.py`` runs the same harness a few hundred times.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
VERSIONS = (1, 2, 3)
PAD_BYTES = 48 * 1024  # makes the model span several chunks and writes


def tiny_onnx_model(version: int) -> bytes:
    """y = x + version, shape (-1, 4), padded with a doc string so it is not trivially small."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])
    bias = helper.make_tensor("bias", TensorProto.FLOAT, [4], [float(version)] * 4)
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "bias"], ["y"])], "g", [x], [y], [bias]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    model.doc_string = "pad " * (PAD_BYTES // 4)
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def prepare(workdir: Path) -> dict[str, Any]:
    """Publish v1..v3 into a local source and install+commit v1 in the agent's store."""
    from agent.ota import machine as m
    from agent.ota.local import file_fetcher, hash_verifier, make_target
    from agent.ota.slots import SlotStore
    from agent.ota.updater import Updater

    source, root = workdir / "source", workdir / "agent"
    targets = {}
    for v in VERSIONS:
        data = tiny_onnx_model(v)
        target = make_target(data, model="crash", version=v)
        (source / target["path"]).parent.mkdir(parents=True, exist_ok=True)
        (source / target["path"]).write_bytes(data)
        targets[v] = target
    up = Updater(
        SlotStore(root), fetch_chunks=file_fetcher(source), verify=hash_verifier,
        smoke_test=lambda d: None, report=lambda s: None,
        config=m.UpdateConfig(probation_seconds=0.0),
    )  # fmt: skip
    assert up.apply(targets[1]).phase == "probation"
    assert up.tick().phase == "committed"
    return {"root": str(root), "source": str(source), "targets": [targets[2], targets[3]]}


def child_main(spec_json: str) -> None:
    """Run in the child: apply each target through probation to commit, slowly."""
    from agent.ota import machine as m
    from agent.ota.local import file_fetcher, hash_verifier
    from agent.ota.slots import SlotStore, write_all
    from agent.ota.updater import Updater

    spec = json.loads(spec_json)

    def slow_write(fh: BinaryIO, data: bytes) -> None:
        time.sleep(0.002)
        write_all(fh, data)

    store = SlotStore(Path(spec["root"]), write=slow_write)
    rec = store.recover()
    up = Updater(
        store, fetch_chunks=file_fetcher(Path(spec["source"]), chunk_size=8192, delay=0.002),
        verify=hash_verifier, smoke_test=lambda d: None, report=lambda s: None,
        config=m.UpdateConfig(probation_seconds=0.03),
    )  # fmt: skip
    up.resume(rec)
    print("ready", flush=True)
    for target in spec["targets"]:
        up.apply(target)
        time.sleep(0.03)
        up.observe(m.ProbationMetrics(frames=10))
        up.tick()
    print("done", flush=True)


def run_child(spec: dict[str, Any], kill_after: float | None) -> tuple[bool, float]:
    """Start the child, wait for "ready", SIGKILL after ``kill_after`` s; (killed, seconds)."""
    code = (
        "import sys; from tests.integration.test_ota_crash import child_main; "
        "child_main(sys.argv[1])"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, json.dumps(spec)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "ready":
            _, err = proc.communicate(timeout=30)
            raise AssertionError(f"child failed to start: {line!r} {err[-2000:]}")
        start = time.monotonic()
        if kill_after is None:
            proc.wait(timeout=60)
            return False, time.monotonic() - start
        try:
            proc.wait(timeout=kill_after)
            return False, time.monotonic() - start  # finished before the kill
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            return True, time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def check_recovered(root: Path) -> int:
    """Recover and prove the slot works: files verify, model loads and computes x + version."""
    import onnxruntime as ort

    from agent.ota.slots import SlotStore
    from edgefleet.modelmeta import VariantMetadata

    rec = SlotStore(root).recover()
    assert rec.slot is not None, f"no working slot after crash: {rec.events}"
    slot = SlotStore(root).verify_slot(rec.slot.name)
    meta = VariantMetadata.from_json((slot.path / "variant.json").read_text())
    assert meta.sha256 == slot.files[slot.model_file]
    session = ort.InferenceSession(str(slot.model_path), providers=["CPUExecutionProvider"])
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    (y,) = session.run(None, {"x": x})
    version = round(float(y[0, 0] - x[0, 0]))
    assert version == meta.version and version in VERSIONS
    np.testing.assert_allclose(y, x + version)
    return version


def crash_once(workdir: Path, rng: random.Random, duration: float) -> dict[str, Any]:
    """Prepare, run the child, kill it at a random instant; return the spec used."""
    spec = prepare(workdir)
    run_child(spec, rng.uniform(0.0, duration))
    return spec


@pytest.fixture(scope="module")
def child_duration(tmp_path_factory: pytest.TempPathFactory) -> float:
    spec = prepare(tmp_path_factory.mktemp("calibrate"))
    killed, seconds = run_child(spec, None)
    assert not killed
    assert check_recovered(Path(spec["root"])) == 3  # an uninterrupted run ends on v3
    return seconds


@pytest.mark.parametrize("seed", range(10))
def test_sigkill_during_update_recovers_a_working_slot(
    tmp_path: Path, child_duration: float, seed: int
) -> None:
    rng = random.Random(seed)
    spec = crash_once(tmp_path, rng, child_duration)
    assert check_recovered(Path(spec["root"])) in VERSIONS
    # The store stays usable: a fresh updater can still take the device to v3.
    from agent.ota import machine as m
    from agent.ota.local import file_fetcher, hash_verifier
    from agent.ota.slots import SlotStore
    from agent.ota.updater import Updater

    root = tmp_path / "agent"
    store = SlotStore(root)
    up = Updater(
        store, fetch_chunks=file_fetcher(tmp_path / "source"), verify=hash_verifier,
        smoke_test=lambda d: None, report=lambda s: None,
        config=m.UpdateConfig(probation_seconds=0.0),
    )  # fmt: skip
    rec = store.recover()
    up.resume(rec)
    if up.state.phase == "probation":
        up.tick()
    target = spec["targets"][-1]  # v3
    up.apply(target)
    up.tick()
    assert check_recovered(root) == 3
