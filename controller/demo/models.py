"""Story 2: one source model becomes a measured, selected and signed variant per profile."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

from controller.demo.context import DemoFailed, DemoRun

DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits"


def digits_files_present() -> bool:
    return all((DIGITS / name).exists() for name in ("edge.onnx", "cloud.onnx", "validation.npz"))


def add_digits(demo: DemoRun, name: str = "digits-edge", onnx: Path | None = None) -> str:
    """`model add` of the digits edge model (or another ONNX file for it); returns NAME:VERSION."""
    out = demo.edgefleet(
        "model",
        "add",
        name,
        "--onnx",
        str(onnx or DIGITS / "edge.onnx"),
        "--validation",
        str(DIGITS / "validation.npz"),
        "--calibration",
        str(DIGITS / "calibration.npz"),
        "--labels",
        str(DIGITS / "labels.txt"),
        "--preprocess",
        str(DIGITS / "preprocess.json"),
    )
    return out.strip().splitlines()[-1].split()[-1]


def story(demo: DemoRun) -> None:
    if not digits_files_present():
        raise DemoFailed(f"the digits reference model is missing in {DIGITS}")
    demo.step("add the digits edge model and its bigger cloud model")
    ref = add_digits(demo)
    demo.say(f"added {ref}")
    demo.edgefleet(
        "model",
        "add",
        "digits-cloud",
        "--onnx",
        str(DIGITS / "cloud.onnx"),
        "--validation",
        str(DIGITS / "validation.npz"),
        "--labels",
        str(DIGITS / "labels.txt"),
        "--preprocess",
        str(DIGITS / "preprocess.json"),
        "--cloud-for",
        "digits-edge",
    )
    demo.say("added digits-cloud (answers the frames digits-edge devices offload)")

    tflite = bool(demo.controller.config.onnx2tf_python) or (
        importlib.util.find_spec("onnx2tf") is not None
    )
    demo.step("build every variant, measure it, select one per hardware profile, sign")
    if not tflite:
        demo.say("(LiteRT variants skipped: run scripts/tflite-venv.sh to include them)")
    args = ["model", "build", ref, "--profiles", "all", "--runs", "30"]
    demo.say(demo.edgefleet(*args, *([] if tflite else ["--no-tflite"])).strip()[-2000:])
    demo.say(demo.edgefleet("model", "variants", ref))
    report = demo.edgefleet_json("model", "variants", ref)
    chosen = {profile: s["variant"] for profile, s in report["selections"].items()}
    if not chosen or not any(chosen.values()):
        raise DemoFailed("the build selected no variant for any profile")

    device = next(iter(demo.agent_dirs))
    demo.step(f"{device} benchmarks its candidates on the device and reports them")
    bench = subprocess.run(
        demo.agent_cmd("bench", "--data-dir", str(demo.agent_dirs[device])),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if bench.returncode != 0:
        raise DemoFailed(f"edgefleet-agent bench failed: {bench.stderr.strip()}")
    demo.say(bench.stdout.strip())

    demo.step("the signed metadata verifies with python-tuf; one flipped byte does not")
    _verify_and_tamper(demo, device, ref)


def _verify_and_tamper(demo: DemoRun, device: str, ref: str) -> None:
    """Check a selected variant the way a device does, with python-tuf (edgefleet.updates),
    reading the same signed files and artifacts the device API serves."""
    from edgefleet.updates import ArtifactMismatch, TrustedUpdater, verify_artifact_stream

    parts = demo.controller.model_parts
    profile = demo.edgefleet_json("device", "show", device)["profile"]
    name, version = ref.split(":")
    selected = demo.controller.models.selected_variant(name, int(version), profile)
    if selected is None:
        raise DemoFailed(f"no variant was selected for {profile}")

    def transport(path: str) -> bytes:
        kind, _, rest = path.partition("/")
        if kind == "metadata":
            return parts.releases.metadata_file(rest)  # NotFound for a root not made yet
        digest = rest.rsplit("/", 1)[-1].split(".", 1)[0]  # targets/<dir>/<sha256>.<file>
        with parts.store.open(digest) as artifact:
            return artifact.read()

    updater = TrustedUpdater(
        demo.root / "tuf-check",
        transport,
        bootstrap_root=parts.releases.metadata_file("1.root.json"),
    )
    updater.refresh()
    target = updater.get_target(selected.target_path, profile)
    dest = updater.download_target(target, demo.root / "verified.bin")
    demo.say(
        f"{selected.variant_id} for {profile}: {target.length} bytes, "
        f"sha256 {target.sha256[:16]}... verified against the signed targets metadata"
    )
    flipped = bytearray(dest.read_bytes())
    flipped[len(flipped) // 2] ^= 0x01
    try:
        verify_artifact_stream([bytes(flipped)], target.length, target.sha256)
    except ArtifactMismatch as exc:
        demo.say(f"after flipping one byte: refused ({str(exc)[:100]}...)")
    else:
        raise DemoFailed("a tampered artifact passed verification")
