"""Build benchmark: every variant of the digits edge model (and MobileNetV2 when its maker
script is present), measured side by side with the fp32 baseline in one run.

    .venv/bin/python bench/bench_build.py [--onnx2tf-python /path/to/tf-venv/bin/python]

Prints, per model, size and latency ratios of every variant against fp32, accuracy deltas,
and the variant selected per hardware profile, then checks the goals:
  - int8 (ONNX static QDQ and LiteRT full int8) file size <= 0.30x fp32 (on the largest model)
  - the selected variant is never slower than fp32 on its profile
  - the accuracy drop of every selected variant is <= 1.0 pp
  - a LiteRT full-int8 model is produced and runs
Exits non-zero when a goal is missed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from controller.build.evaluate import MeasureConfig  # noqa: E402
from controller.build.pipeline import BuildOptions, BuildReport, build_model  # noqa: E402
from controller.build.source import SourceModel, load_preprocessing  # noqa: E402
from controller.build.synthetic import (  # noqa: E402
    make_mobilenetv2_like,
    self_labels,
    synthetic_frames,
)
from controller.build.tflite_variants import Onnx2TfConfig  # noqa: E402
from edgefleet.modelmeta import Preprocessing  # noqa: E402
from edgefleet.profiles import BUILTIN_PROFILES  # noqa: E402

TIE = 1.03  # a selected variant within 3% of fp32 counts as "not slower" (measurement noise)


def digits_source(folder: Path) -> SourceModel | None:
    if not (folder / "edge.onnx").exists():
        return None
    return SourceModel.from_files(
        folder / "edge.onnx",
        "digits-edge",
        1,
        load_preprocessing(folder / "preprocess.json"),
        folder / "validation.npz",
        folder / "calibration.npz",
    )


def mobilenet_source(work: Path) -> SourceModel:
    """MobileNetV2 from examples/mobilenetv2 when its maker script exists, else a
    MobileNetV2-shaped stand-in with random weights (same size and layer mix)."""
    script = REPO / "examples" / "mobilenetv2" / "make_mobilenetv2.py"
    out = work / "mobilenetv2.onnx"
    if script.exists():
        subprocess.run([sys.executable, str(script), "--out", str(out)], check=True, timeout=900)
        name = "mobilenetv2"
    else:
        print(
            "(examples/mobilenetv2/make_mobilenetv2.py absent: using a MobileNetV2-shaped "
            "stand-in with random weights)"
        )
        make_mobilenetv2_like(out)
        name = "mobilenetv2-like"
    model = out if out.is_file() else next(out.glob("*.onnx"))
    pre = Preprocessing(
        size=(224, 224), channels=3, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
    )
    # No labelled images ship for it: the labels are its own answers on synthetic frames, so
    # accuracy deltas read as disagreement with the fp32 model.
    frames = synthetic_frames(100, size=224, channels=3)
    labels = self_labels(model, frames, pre)
    return SourceModel.create(model, name, 1, pre, frames, labels, frames)


def print_report(report: BuildReport, seconds: float) -> None:
    print(
        f"\n== {report.model} v{report.version}: built in {seconds:.1f} s, "
        f"source top-1 {report.source_accuracy:.2%}"
    )
    fp32 = report.result("onnx-fp32").evaluation
    threads = sorted(fp32.latency) if fp32 else []
    head = "".join(f"  lat x fp32 @{t}t" for t in threads)
    print(
        f"{'variant':24} {'status':8} {'size':>10} {'x fp32':>7} {'zstd x':>7}{head}"
        f" {'top-1':>7} {'d pp':>6} {'agree':>6} {'ECE':>6} {'T':>5}"
    )
    for r in report.results:
        ev = r.evaluation
        if ev is None or fp32 is None:
            print(f"{r.variant:24} {r.status:8} {r.reason}")
            continue
        lat = "".join(
            f"  {ev.latency[t].ratio:5.2f} ({ev.latency[t].median_ms:6.2f}ms)" for t in threads
        )
        print(
            f"{r.variant:24} {r.status:8} {ev.size_bytes:>10} "
            f"{ev.size_bytes / fp32.size_bytes:7.2f} {ev.zstd_bytes / fp32.size_bytes:7.2f}"
            f"{lat} {ev.accuracy:7.2%} {-ev.accuracy_drop_pp:+6.2f} {ev.agreement:6.1%}"
            f" {ev.ece:6.3f} {ev.temperature:5.2f}"
        )
    print("selected per profile:")
    for name, sel in report.selections.items():
        ms = f"{sel.latency_ms:.3f} ms ({sel.latency_source})" if sel.latency_ms else ""
        why = "" if sel.variant else "; ".join(f"{v}: {r}" for v, r in sel.rejected.items())
        print(f"  {name:15} {sel.variant or '-':24} {ms}{why[:300]}")


def check_goals(report: BuildReport, size_goal: bool) -> list[tuple[str, bool, str]]:
    checks: list[tuple[str, bool, str]] = []
    evs = {r.variant: r.evaluation for r in report.results if r.evaluation is not None}
    if size_goal:
        for int8, base in (("onnx-int8-static", "onnx-fp32"), ("tflite-int8", "tflite-fp32")):
            if int8 in evs and base in evs:
                ratio = evs[int8].size_bytes / evs[base].size_bytes
                checks.append(
                    (f"{report.model}: {int8} size <= 0.30x {base}", ratio <= 0.30, f"{ratio:.3f}")
                )
    profiles = {p.name: p for p in BUILTIN_PROFILES}
    for name, sel in report.selections.items():
        if sel.variant is None:
            continue
        ev = evs[sel.variant]
        lat = ev.latency_at(profiles[name].threads)
        assert lat is not None
        if "fp32" in profiles[name].precisions:
            checks.append(
                (
                    f"{report.model}/{name}: {sel.variant} not slower than fp32",
                    lat.ratio <= TIE,
                    f"{lat.ratio:.2f}x at {lat.threads} threads",
                )
            )
        else:  # an integer-only NPU cannot run fp32 at all; devices' own measurements decide
            print(
                f"  ({report.model}/{name}: no fp32 on this profile; {sel.variant} runs "
                f"{lat.ratio:.2f}x fp32 on this host's CPU, not on the NPU)"
            )
        checks.append(
            (
                f"{report.model}/{name}: {sel.variant} accuracy drop <= 1.0 pp",
                ev.accuracy_drop_pp <= 1.0,
                f"{ev.accuracy_drop_pp:.2f} pp",
            )
        )
    tfl = next((r for r in report.results if r.variant == "tflite-int8"), None)
    checks.append(
        (
            f"{report.model}: LiteRT full-int8 produced and runnable",
            tfl is not None and tfl.evaluation is not None,
            tfl.reason if tfl and tfl.reason else "ok",
        )
    )
    return checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digits", type=Path, default=REPO / "examples" / "digits")
    parser.add_argument(
        "--onnx2tf-python",
        default=None,
        help="interpreter with onnx2tf (default: this one, if it has it)",
    )
    parser.add_argument("--runs", type=int, default=40, help="timed runs per variant")
    parser.add_argument("--no-mobilenet", action="store_true")
    args = parser.parse_args()

    options = BuildOptions(
        measure=MeasureConfig(warmup=10, runs=args.runs),
        onnx2tf=Onnx2TfConfig(python=args.onnx2tf_python),
    )
    checks: list[tuple[str, bool, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
        work = Path(tmp)
        sources = [("digits", digits_source(args.digits))]
        if not args.no_mobilenet:
            sources.append(("mobilenetv2", mobilenet_source(work)))
        built = [(label, src) for label, src in sources if src is not None]
        for label, src in sources:
            if src is None:
                print(f"({label}: reference model not available, skipped)")
        for i, (label, src) in enumerate(built):
            start = time.perf_counter()
            report = build_model(src, BUILTIN_PROFILES, work / label, options=options)
            print_report(report, time.perf_counter() - start)
            checks += check_goals(report, size_goal=i == len(built) - 1)
    print("\ngoals:")
    for what, ok, detail in checks:
        print(f"  [{'ok' if ok else 'MISS'}] {what}: {detail}")
    return 0 if checks and all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
