"""SIGKILL on the real agent update path: a child process runs OtaService (SlotStore,
TufVerifier, UpdateService download stream over mutual TLS, as
agent.assembly.build_ota_service builds it) against a real controller to
update v1 -> v2 with slowed writes; the parent kills it at a random instant. Afterwards
``recover()`` must hand back a slot whose files verify, whose variant is v1 or v2, and whose
model loads and runs in ONNX Runtime."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from agent.enroll import enroll
from agent.hardware import detect
from agent.identity import Identity
from agent.ota.component import onnx_smoke_test
from agent.ota.service import OtaService
from agent.ota.slots import SlotStore
from controller.services.rollouts import target_of
from tests.fleet import Admin, start_controller
from tests.rollout_fleet import add_and_build

REPO = Path(__file__).resolve().parents[2]
WRITE_DELAY_S = 0.03


def make_service(data_dir: Path, slow: bool) -> OtaService:
    from agent.assembly import AgentConfig, OtaSettings, build_ota_service
    from agent.controller_client import device_channel
    from agent.identity import Credentials
    from agent.ota.slots import write_all

    identity = Identity.load(data_dir)

    def write(fh: BinaryIO, data: bytes) -> None:
        if slow:
            time.sleep(WRITE_DELAY_S)
        write_all(fh, data)

    channel = device_channel(identity.controller, Credentials.load(data_dir), 8 << 20)
    ota = OtaSettings(max_retries=2, probation_s=0.2, smoke_frames=1, download_timeout_s=20.0)
    return build_ota_service(
        AgentConfig(data_dir, ota=ota), identity, channel, threads=1, slot_writer=write
    )


def child_main(data_dir: str, desired_json: str) -> None:
    """In the child: recover, apply the desired target, let probation commit."""
    service = make_service(Path(data_dir), slow=True)
    service.recover()
    print("ready", flush=True)  # the parent times its kill from here
    service.handle(json.loads(desired_json))
    deadline = time.monotonic() + 5
    while service.updater.state.phase == "probation" and time.monotonic() < deadline:
        time.sleep(0.05)
        service.updater.tick()
    print("done", service.current_variant, flush=True)


def run_child(data_dir: Path, desired: dict[str, Any], kill_after: float | None) -> float:
    """Run the child; SIGKILL it ``kill_after`` s into the update. Returns the update time."""
    code = (
        f"import sys; sys.path.insert(0, {str(REPO)!r}); "
        "from tests.integration.test_ota_crash_real import child_main; "
        "child_main(sys.argv[1], sys.argv[2])"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(data_dir), json.dumps(desired)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    ready = proc.stdout.readline()
    start = time.monotonic()
    if kill_after is not None and ready.startswith(b"ready"):
        try:
            proc.wait(kill_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    if kill_after is None:
        assert proc.returncode == 0 and b"done" in out, err.decode()[-2000:]
    return time.monotonic() - start


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A controller with v1 and v2, and an agent data dir with v1 committed."""
    root = tmp_path_factory.mktemp("crash-real")
    ctl = start_controller(root / "controller")
    admin = Admin(ctl)
    try:
        v1 = add_and_build(admin, root, "tiny", 8)
        v2 = add_and_build(admin, root, "tiny", 6)
        data_dir = root / "golden"
        token = admin.register("crashy", "auto")
        identity = enroll(data_dir, f"127.0.0.1:{ctl.grpc_port}", token, detect())

        def desired(version: int) -> dict[str, Any]:
            v = ctl.models.selected_variant("tiny", version, identity.profile)
            assert v is not None
            return {"variant_id": v.variant_id, "rollout_id": f"r{version}", "revision": version,
                    "target": target_of(v)}  # fmt: skip

        service = make_service(data_dir, slow=False)
        service.recover()
        service.handle(desired(v1))
        time.sleep(0.25)
        service.updater.tick()
        assert service.store.state().probation is None
        variants = {desired(v)["variant_id"] for v in (v1, v2)}
        run_dir = root / "calibrate"
        shutil.copytree(data_dir, run_dir)
        duration = run_child(run_dir, desired(v2), None)
        yield {"dir": data_dir, "root": root, "desired": desired(v2), "variants": variants,
               "duration": duration}  # fmt: skip
    finally:
        admin.close()
        ctl.stop()


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", range(6))
def test_sigkill_during_real_update_recovers(golden: dict[str, Any], seed: int) -> None:
    run_dir = golden["root"] / f"run-{seed}"
    shutil.copytree(golden["dir"], run_dir)
    delay = random.Random(seed).uniform(0.0, golden["duration"])
    run_child(run_dir, golden["desired"], delay)
    recovery = SlotStore(run_dir / "ota").recover()
    assert recovery.slot is not None, recovery.events
    slot = SlotStore(run_dir / "ota").verify_slot(recovery.slot.name)
    assert slot.variant_id in golden["variants"]
    print(f"kill at {delay:.2f}/{golden['duration']:.2f} s -> {slot.variant_id} {recovery.events}")
    onnx_smoke_test(frames=1)(slot.path)
