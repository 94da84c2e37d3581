"""Build benchmark on the Fashion-MNIST workload: every variant of the edge student and of the
cloud teacher (EfficientNet-Lite0), built for every built-in profile, several times.

    .venv/bin/python bench/bench_build.py [--builds 3] [--quick] [--onnx2tf-python PY]

Each build is the controller's own (``build_model`` on a ``SourceModel.from_files`` source,
all of BUILTIN_PROFILES, LiteRT when onnx2tf is available): its latency ratios are measured
side by side with ONNX Runtime fp32 of the same model, batch 1, at every profile's thread
count; accuracy is measured on all 2000 frames of validation.npz (what selection uses) and,
here, on the 2000 held-out frames of test.npz. Every build measures afresh (the product has no
cache of converted LiteRT files, so none is reused). Prints a table per model, the selection
per profile per build, and one line per goal:

    goal <name>: <measured> (target <op> <value>) OK | MISSED

  teacher / student   the variant selected for this host's profile (resolved like
                      ``--profile auto``) >= 2x faster than ORT fp32 at <= 1 pp accuracy drop
  int8-size ...       ONNX static QDQ and LiteRT full int8 of the teacher <= 0.30x its size
  selection-identical every profile's selection, both models, identical across the builds

A missed speed goal is followed by its measured causes: the fastest variant the profile can
run (re-timed in alternating blocks at 1 thread and the profile's count), the fixed per-call
cost (a trivial model with the same input, through the same build measurement, ONNX Runtime
and LiteRT), and ONNX Runtime's per-op profile of fp32 against the fastest int8 variant.
--quick: 2 builds of 10 timed runs. Exits 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fashion_workload import (  # noqa: E402
    Workload,
    add_workload_arguments,
    host_profile,
    litert_toolchain,
)

from controller.optimize.evaluate import Evaluation, MeasureConfig, in_layout  # noqa: E402
from controller.optimize.pipeline import BuildOptions, BuildReport, build_model  # noqa: E402
from controller.optimize.runners import OrtRunner, open_runner  # noqa: E402
from controller.optimize.source import SourceModel, preprocess  # noqa: E402
from controller.optimize.tflite_variants import Onnx2TfConfig, onnx2tf_python  # noqa: E402
from edgefleet.profiles import BUILTIN_PROFILES, HardwareProfile  # noqa: E402

SPEEDUP_GOAL = 2.0
DROP_GOAL_PP = 1.0
INT8_SIZE_GOAL = 0.30
INT8_VARIANTS = ("onnx-int8-static", "tflite-int8")
ROLES = {"edge": "student", "cloud": "teacher"}


@dataclass
class ModelRuns:
    role: str  # edge | cloud
    source: SourceModel
    builds: list[BuildReport] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    test_accuracy: dict[str, float] = field(default_factory=dict)  # variant -> top-1 (build 1)
    source_test_accuracy: float = 0.0
    cause: list[str] = field(default_factory=list)  # measured reasons for a missed speed goal

    @property
    def goal_name(self) -> str:
        return ROLES[self.role]

    @property
    def source_bytes(self) -> int:
        return self.source.onnx_path.stat().st_size

    def evaluation(self, build: int, variant: str) -> Evaluation | None:
        report = self.builds[build]
        return next((r.evaluation for r in report.results if r.variant == variant), None)


def goal_line(name: str, measured: str, op: str, value: str, ok: bool) -> tuple[str, bool]:
    return f"goal {name}: {measured} (target {op} {value}) {'OK' if ok else 'MISSED'}", ok


# ---------------------------------------------------------------- building


def progress_printer(label: str, started: float) -> Any:
    def progress(variant: str, phase: str) -> None:
        if phase in ("built", "skipped", "failed"):
            took = time.perf_counter() - started
            print(f"    [{label} {took:6.0f} s] {variant}: {phase}", flush=True)

    return progress


def test_accuracies(runs: ModelRuns, report: BuildReport, x: np.ndarray, y: np.ndarray) -> None:
    """Top-1 of every built variant (and the source) on held-out frames, with the same
    preprocessing and runners the build measures with."""
    src = runs.source
    tensor = preprocess(x, src.preprocessing)
    runs.source_test_accuracy = float(
        (OrtRunner(src.onnx_path, 2).run(tensor).argmax(1) == y).mean()
    )
    for r in report.built():
        assert r.metadata is not None
        meta = r.metadata
        runner = open_runner(Path(r.directory) / meta.file, meta.runtime, 2)
        logits = runner.run(in_layout(tensor, src.signature.layout, meta.preprocessing.layout))
        runs.test_accuracy[r.variant] = float((logits.argmax(1) == y).mean())


# ---------------------------------------------------------------- printing


def ratio_cell(values: Sequence[float]) -> str:
    if not values:
        return f"{'-':>17}"
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:5.2f}{'':12}"
    return f"{med:5.2f} [{min(values):4.2f}-{max(values):4.2f}]"


def print_table(runs: ModelRuns, threads: Sequence[int]) -> None:
    first = runs.builds[0]
    src = runs.source
    base_txt = ", ".join(f"{pooled_baseline_ms(runs, t):.3f} ms @{t}t" for t in threads)
    print(
        f"\n== {first.model} ({runs.goal_name}, input {list(src.signature.input_shape)}): "
        f"{runs.source_bytes / 1e6:.2f} MB, ORT fp32 {base_txt} (median over every variant's "
        f"interleaved baseline, all builds); source top-1 "
        f"{first.source_accuracy:.2%} on validation ({len(src.validation_y)}), "
        f"{runs.source_test_accuracy:.2%} on test"
    )
    print(
        "   latency x = variant / ORT fp32 of the source, batch 1, median of the builds "
        f"[min-max] (profiles of more threads than this host's {threads[-1]} cores are measured "
        f"at {threads[-1]}); size x = file / source file; d pp = top-1 change"
    )
    head = "".join(f"   lat x @{t}t{'':9}" for t in threads)
    print(
        f"   {'variant':22} {'size x':>6}{head} {'ms @' + str(threads[-1]) + 't':>8} "
        f"{'val top1':>8} {'d pp':>6} {'test d pp':>9} {'agree':>6}"
    )
    for r in first.results:
        evs = _all(runs, r.variant)
        if not evs:
            print(f"   {r.variant:22} {r.status}: {r.reason[:150]}")
            continue
        ev = evs[0]
        cells = "".join(
            "   " + ratio_cell([e.latency[t].ratio for e in evs if t in e.latency]) for t in threads
        )
        ms = statistics.median(e.latency[threads[-1]].median_ms for e in evs)
        test = runs.test_accuracy.get(r.variant)
        test_pp = (
            f"{(test - runs.source_test_accuracy) * 100:+9.2f}"
            if test is not None
            else (f"{'-':>9}")
        )
        drops = {round(e.accuracy_drop_pp, 3) for e in evs}
        flag = "" if len(drops) == 1 else " (val differs by build)"
        built = f" built {len(evs)}/{len(runs.builds)}" if len(evs) < len(runs.builds) else ""
        print(
            f"   {r.variant:22} {ev.size_bytes / runs.source_bytes:6.3f}{cells} {ms:8.3f} "
            f"{ev.accuracy:8.2%} {-ev.accuracy_drop_pp:+6.2f} {test_pp} {ev.agreement:6.1%}"
            f"{flag}{built}"
        )


def print_noise(runs: ModelRuns, threads: Sequence[int]) -> None:
    """onnx-fp32 is the source re-saved: its ratio to the baseline is pure measurement noise."""
    cells = []
    for t in threads:
        ratios = [
            x for e in _all(runs, "onnx-fp32") if t in e.latency for x in e.latency[t].round_ratios
        ]
        if ratios:
            cells.append(f"{min(ratios):.2f}-{max(ratios):.2f} @{t}t")
    if cells:
        print(
            "   noise: onnx-fp32 (the source re-saved) against the baseline, round ratios of all "
            f"builds span {', '.join(cells)}"
        )


def _all(runs: ModelRuns, variant: str) -> list[Evaluation]:
    evs = [runs.evaluation(b, variant) for b in range(len(runs.builds))]
    return [e for e in evs if e is not None]


def print_selections(runs: ModelRuns, host: HardwareProfile) -> list[str]:
    """Selections per profile per build; returns the profiles whose selection differs."""
    n = len(runs.builds)
    print(f"   selected per profile ({n} builds; host estimate ms)")
    differs = []
    for profile in BUILTIN_PROFILES:
        sels = [b.selections[profile.name] for b in runs.builds]
        picks = [s.variant or "-" for s in sels]
        same = len(set(picks)) == 1
        if not same:
            differs.append(profile.name)
        cells = "  ".join(
            f"{(s.variant or '-'):20} {s.latency_ms or 0:7.3f}" if s.variant else f"{'-':28}"
            for s in sels
        )
        mark = " (this host)" if profile.name == host.name else ""
        print(f"   {profile.name + mark:26} {cells}  {'same' if same else 'DIFFERENT'}")
        if all(s.variant is None for s in sels):
            reasons = "; ".join(f"{v}: {why}" for v, why in sels[0].rejected.items())
            print(f"      nothing fits: {reasons[:300]}")
    for name in differs:
        sels = [b.selections[name] for b in runs.builds]
        picks = sorted({s.variant for s in sels if s.variant})
        print(f"   difference on {name}:")
        for i, s in enumerate(sels):
            others = "; ".join(f"{v}: {s.rejected.get(v, '?')}" for v in picks if v != s.variant)
            print(f"      build {i + 1}: {s.variant} {s.latency_ms or 0:.3f} ms; {others}")
    return differs


# ---------------------------------------------------------------- side-by-side confirmation


def side_by_side(
    runs: ModelRuns, build: int, variant: str, threads: int, rounds: int, block: int = 10
) -> tuple[float, float]:
    """Median ms of ``variant`` and of ORT fp32 of the source, timed in alternating blocks
    (so neither session's spinning threads sit in the other's timings), batch 1."""
    result = next(r for r in runs.builds[build].results if r.variant == variant)
    assert result.metadata is not None
    meta, src = result.metadata, runs.source
    one_src = src.validation_inputs()[:1]
    one = in_layout(one_src, src.signature.layout, meta.preprocessing.layout)
    runner = open_runner(Path(result.directory) / meta.file, meta.runtime, threads)
    baseline = OrtRunner(src.onnx_path, threads)
    for _ in range(block):
        runner.run(one)
        baseline.run(one_src)
    ours: list[float] = []
    theirs: list[float] = []
    for i in range(rounds):
        pairs = [(runner, one, ours), (baseline, one_src, theirs)]
        for run, x, out in pairs if i % 2 == 0 else pairs[::-1]:
            for _ in range(block):
                t = time.perf_counter_ns()
                run.run(x)
                out.append((time.perf_counter_ns() - t) / 1e6)
    return statistics.median(ours), statistics.median(theirs)


# ---------------------------------------------------------------- goals


def allowed_on(runs: ModelRuns, build: int, profile: HardwareProfile) -> list[Evaluation]:
    """Built variants the profile can run: the pick and those that lost only on speed/size."""
    from controller.services.model_views import candidates_of

    names = candidates_of(runs.builds[build].selections[profile.name])
    return [e for v in names if (e := runs.evaluation(build, v)) is not None]


def rounds(lat: Any) -> str:
    """How the build's ratio was formed (rounds exist once the build measures in rounds)."""
    n = len(getattr(lat, "round_ratios", ()))
    return f"median of {n} round ratios" if n > 1 else "ratio of medians"


def speed_goal(runs: ModelRuns, host: HardwareProfile, confirm_rounds: int) -> tuple[str, bool]:
    name, threads = runs.goal_name, host.threads
    per_build = []
    for b, report in enumerate(runs.builds):
        sel = report.selections[host.name]
        ev = runs.evaluation(b, sel.variant) if sel.variant else None
        lat = ev.latency_at(threads) if ev else None
        per_build.append((sel.variant, ev, lat))
    if any(lat is None for _, _, lat in per_build):
        return goal_line(
            name,
            f"nothing selected for {host.name}",
            ">=",
            f"{SPEEDUP_GOAL:.2f}x at <= {DROP_GOAL_PP} pp",
            False,
        )
    speedups = [1.0 / lat.ratio for _, _, lat in per_build if lat]
    drops = [ev.accuracy_drop_pp for _, ev, _ in per_build if ev]
    ok = all(s >= SPEEDUP_GOAL for s in speedups) and all(d <= DROP_GOAL_PP for d in drops)
    picks = sorted({v for v, _, _ in per_build if v})
    for b, (variant, ev, lat) in enumerate(per_build):
        assert ev and lat
        test = runs.test_accuracy.get(variant or "") if b == 0 else None
        test_txt = (
            f", test {(runs.source_test_accuracy - test) * 100:.2f} pp" if test is not None else ""
        )
        print(
            f"   {name} build {b + 1}: {host.name} selected {variant}: {lat.median_ms:.3f} ms vs "
            f"ORT fp32 {lat.baseline_median_ms:.3f} ms @{lat.threads}t, speed-up "
            f"{1 / lat.ratio:.2f}x ({rounds(lat)}); drop {ev.accuracy_drop_pp:.2f} pp val{test_txt}"
        )
    last_pick = per_build[-1][0]
    timed = retime(runs, last_pick, host, confirm_rounds, f"{name} re-timed") if last_pick else {}
    measured = (
        f"speed-up {statistics.median(speedups):.2f}x (median of {len(speedups)} builds, "
        f"min {min(speedups):.2f}x; {'/'.join(picks)} @{threads}t) at {max(drops):.2f} pp drop"
    )
    line = goal_line(name, measured, ">=", f"{SPEEDUP_GOAL:.2f}x at <= {DROP_GOAL_PP:.1f} pp", ok)
    if not ok:
        if last_pick and timed:
            runs.cause.append(f"the pick, {last_pick}, {scaling(last_pick, timed, threads)}")
        runs.cause.append(investigate(runs, host, confirm_rounds, last_pick))
    return line


def retime(
    runs: ModelRuns, variant: str, host: HardwareProfile, confirm_rounds: int, label: str
) -> dict[int, tuple[float, float]]:
    """``variant`` and ORT fp32 re-timed in alternating blocks at 1 thread and the profile's
    count (last build's files): thread count -> (variant ms, fp32 ms)."""
    last = len(runs.builds) - 1
    timed: dict[int, tuple[float, float]] = {}
    if not confirm_rounds or runs.evaluation(last, variant) is None:
        return timed
    for t in sorted({1, host.threads}):
        ours, theirs = side_by_side(runs, last, variant, t, confirm_rounds)
        print(
            f"   {label} (build {last + 1}, {confirm_rounds} alternating blocks of 10): "
            f"{variant} {ours:.3f} ms vs ORT fp32 {theirs:.3f} ms @{t}t = {theirs / ours:.2f}x"
        )
        timed[t] = (ours, theirs)
    return timed


def scaling(variant: str, timed: dict[int, tuple[float, float]], threads: int) -> str:
    """Re-timed speed-ups per thread count, and what the extra threads bought each side."""
    text = "re-timed " + ", ".join(f"{b / a:.2f}x @{t}t" for t, (a, b) in timed.items())
    if 1 in timed and threads in timed and threads != 1:
        (a1, b1), (a2, b2) = timed[1], timed[threads]
        text += (
            f"; from 1 to {threads} threads {variant} goes {a1:.3f} -> {a2:.3f} ms "
            f"({a1 / a2:.2f}x), ORT fp32 {b1:.3f} -> {b2:.3f} ms ({b1 / b2:.2f}x)"
        )
    return text


def runnable_on(runs: ModelRuns, build: int, profile: HardwareProfile) -> list[Evaluation]:
    """Candidates plus the variants ruled out only by the accuracy budget."""
    sel = runs.builds[build].selections[profile.name]
    over = [v for v, why in sel.rejected.items() if why.startswith("accuracy drop")]
    extra = [e for v in over if (e := runs.evaluation(build, v)) is not None]
    return allowed_on(runs, build, profile) + extra


def investigate(
    runs: ModelRuns, host: HardwareProfile, confirm_rounds: int, pick: str | None
) -> str:
    """The fastest variants the host profile can run, per thread count (over-budget ones
    marked), and the fastest within budget re-timed; returns a one-line summary."""
    print(
        f"   why {runs.goal_name} missed: fastest variants {host.name} can run, variant/ORT fp32 "
        "(median of builds), ms, accuracy drop on validation"
    )
    evs = runnable_on(runs, 0, host)
    over = {
        v
        for v, why in runs.builds[0].selections[host.name].rejected.items()
        if why.startswith("accuracy drop")
    }
    for t in sorted({t for ev in evs for t in ev.latency}):
        ranked = sorted(evs, key=lambda ev: median_ratio(runs, ev.variant, t))
        cells = ", ".join(
            f"{ev.variant} {median_ratio(runs, ev.variant, t):.2f} "
            f"({ev.latency[t].median_ms:.3f} ms, {ev.accuracy_drop_pp:+.2f} pp"
            f"{', over budget' if ev.variant in over else ''})"
            for ev in ranked[:5]
        )
        print(f"     @{t}t: {cells}")
    within = [ev for ev in evs if ev.variant not in over]
    fastest = min(within, key=lambda ev: median_ratio(runs, ev.variant, host.threads), default=None)
    if fastest is None:
        return "no variant within the accuracy budget"
    ratio = median_ratio(runs, fastest.variant, host.threads)
    summary = (
        f"the fastest variant within budget in the builds is {fastest.variant}, speed-up "
        f"{1 / ratio:.2f}x @{host.threads}t (median of builds)"
    )
    if fastest.variant != pick:
        timed = retime(runs, fastest.variant, host, confirm_rounds, "  fastest re-timed")
        if timed:
            summary += f"; {scaling(fastest.variant, timed, host.threads)}"
    return summary


def pooled_baseline_ms(runs: ModelRuns, threads: int) -> float:
    """ORT fp32 of the source at ``threads``: the median of the baseline medians timed next to
    every variant of every build (one variant's pairing can be far off at 2 threads)."""
    return statistics.median(
        lat.baseline_median_ms
        for b in runs.builds
        for r in b.results
        if r.evaluation is not None and (lat := r.evaluation.latency_at(threads)) is not None
    )


def median_ratio(runs: ModelRuns, variant: str, threads: int) -> float:
    return statistics.median(
        e.latency[threads].ratio for e in _all(runs, variant) if threads in e.latency
    )


def size_goals(runs: ModelRuns) -> list[tuple[str, bool]]:
    lines = []
    for variant in INT8_VARIANTS:
        name = f"int8-size {runs.goal_name} {variant}"
        ev = runs.evaluation(0, variant)
        if ev is None:
            r = next((r for r in runs.builds[0].results if r.variant == variant), None)
            why = f"not built ({r.reason[:120] if r else 'no such variant'})"
            lines.append(goal_line(name, why, "<=", f"{INT8_SIZE_GOAL:.2f}x", False))
            continue
        ratio = ev.size_bytes / runs.source_bytes
        measured = (
            f"{ratio:.3f}x ({ev.size_bytes} B of {runs.source_bytes} B, the source ONNX fp32)"
        )
        lines.append(goal_line(name, measured, "<=", f"{INT8_SIZE_GOAL:.2f}x", ratio <= 0.30))
    return lines


def stability_goal(models: Sequence[ModelRuns], differs: dict[str, list[str]]) -> tuple[str, bool]:
    n_builds = min(len(m.builds) for m in models)
    total = sum(len(BUILTIN_PROFILES) for _ in models)
    bad = sum(len(v) for v in differs.values())
    detail = "; ".join(f"{k}: {', '.join(v)}" for k, v in differs.items() if v)
    measured = f"{total - bad}/{total} profile selections identical across {n_builds} builds"
    if detail:
        measured += f" (different: {detail})"
    if n_builds < 2:
        return goal_line("selection-identical", "not measured (one build)", "==", "all", False)
    return goal_line("selection-identical", measured, "==", f"{total}/{total}", bad == 0)


# ---------------------------------------------------------------- where the time goes


def trivial_model(path: Path, channels: int, side: int, classes: int) -> Path:
    """Input [N, C, side, side] -> GlobalAveragePool -> Flatten -> Gemm [N, classes]: next to
    no arithmetic, so its call time is the runtime's fixed per-call cost."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((channels, classes), np.float32), "w")
    b = numpy_helper.from_array(np.arange(classes, dtype=np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pool"]),
            helper.make_node("Flatten", ["pool"], ["flat"]),
            helper.make_node("Gemm", ["flat", "w", "b"], ["logits"]),
        ],
        "trivial",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", channels, side, side])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        [w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def op_breakdown(path: Path, x: np.ndarray, threads: int, runs: int = 300) -> dict[str, float]:
    """ONNX Runtime's profiler: ms per run in each op type's kernels, plus ``(run)`` for the
    whole run and ``(nodes)`` for the nodes executed per run. Profiling adds a cost per node,
    so absolute times are inflated; the shares compare variants."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.enable_profiling = True
    opts.log_severity_level = 3
    with tempfile.TemporaryDirectory() as tmp:
        opts.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        for _ in range(runs):
            session.run(None, {name: x})
        events = json.loads(Path(session.end_profiling()).read_text())
    run_events = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    kept = run_events[len(run_events) // 5 :]  # the first fifth is warm-up
    start = kept[0]["ts"]
    out: dict[str, float] = {}
    nodes = [e for e in events if e.get("cat") == "Node" and e["ts"] >= start]
    for e in nodes:
        op = str(e.get("args", {}).get("op_name", "?"))
        out[op] = out.get(op, 0.0) + e["dur"] / 1000 / len(kept)
    out["(run)"] = sum(e["dur"] for e in kept) / 1000 / len(kept)
    out["(nodes)"] = len(nodes) / len(kept)
    return out


def print_breakdown(runs: ModelRuns, variant: str, threads: int) -> dict[str, float]:
    ev = runs.evaluation(len(runs.builds) - 1, variant)
    result = next(r for r in runs.builds[-1].results if r.variant == variant)
    if ev is None or result.metadata is None or ev.runtime != "onnxruntime":
        return {}
    x = runs.source.validation_inputs()[:1]
    ops = op_breakdown(Path(result.directory) / result.metadata.file, x, threads)
    run, n_nodes = ops.pop("(run)"), ops.pop("(nodes)")
    top = sorted(ops.items(), key=lambda kv: -kv[1])[:6]
    cells = ", ".join(f"{op} {ms:.4f}" for op, ms in top)
    print(
        f"     ORT profiler @{threads}t, {variant}: {run:.4f} ms/run (profiled), {n_nodes:.0f} "
        f"nodes, {sum(ops.values()) / run:.0%} in kernels: {cells} ms"
    )
    return {**ops, "(run)": run, "(nodes)": n_nodes}


def speed_cause(
    runs: ModelRuns, host: HardwareProfile, options: BuildOptions, work: Path, tflite: bool
) -> None:
    """Measure where a model's time goes: the fixed cost of one call (a trivial model with
    the same input, through the product's build measurement) and, per op type, fp32 against
    the fastest ONNX Runtime int8 variant."""
    src = runs.source
    t = host.threads
    c, side = src.signature.input_shape[1], src.signature.input_shape[2]
    trivial = trivial_model(work / f"trivial-{runs.role}.onnx", c, side, src.signature.num_classes)
    tsrc = SourceModel.create(
        trivial, "trivial", 1, src.preprocessing, src.validation_x[:200], src.validation_y[:200]
    )
    measure = replace(options.measure, runs=200, warmup=20)
    only = ("onnx-fp32", "tflite-fp32", "tflite-int8")
    report = build_model(
        tsrc,
        [host, replace(host, name=f"{host.name}-1t", threads=1)],  # time 1 thread as well
        work / f"trivial-{runs.role}",
        include_tflite=tflite,
        options=replace(options, only=only, measure=measure),
    )
    fp32_ms = pooled_baseline_ms(runs, t)
    print(
        f"   cause {runs.goal_name}: fixed per-call cost = a trivial model with the same input "
        f"{list(src.signature.input_shape)} (GlobalAveragePool+Gemm), build measurement, batch 1"
    )
    floors = {}
    for r in report.results:
        if r.evaluation is None:
            print(f"     trivial {r.variant}: {r.status} {r.reason[:100]}")
            continue
        cells = ", ".join(
            f"{lat.median_ms:.4f} ms @{th}t" for th, lat in sorted(r.evaluation.latency.items())
        )
        print(f"     trivial {r.variant:12} {cells}")
        if lat := r.evaluation.latency_at(t):
            floors[r.variant] = lat.median_ms
    if "tflite-int8" in floors and "tflite-fp32" in floors:
        extra = floors["tflite-int8"] - floors["tflite-fp32"]
        print(
            f"     LiteRT full int8 pays {extra:.4f} ms more per call than LiteRT fp32 on the "
            "trivial model: the runner's NumPy float->int8 input and int8->float output "
            "conversion, plus the trivial graph's int8 ops"
        )
        runs.cause.append(
            f"LiteRT full int8's input/output conversion costs {extra:.4f} ms per call "
            "(trivial model: tflite-int8 minus tflite-fp32)"
        )
    if floors:
        floor_variant = min(floors, key=lambda v: floors[v])
        floor = floors[floor_variant]
        print(
            f"     ORT fp32 {runs.goal_name} {fp32_ms:.4f} ms @{t}t; the cheapest call "
            f"({floor_variant}) {floor:.4f} ms = {floor / fp32_ms:.0%} of it: with free kernels "
            f"at most {fp32_ms / floor:.1f}x; 2x leaves {fp32_ms / 2 - floor:.4f} ms for the "
            "arithmetic"
        )
        runs.cause.append(
            f"fixed per-call cost (trivial model, {floor_variant}) {floor:.4f} ms = "
            f"{floor / fp32_ms:.1%} of ORT fp32's {fp32_ms:.4f} ms @{t}t, so it caps the "
            f"speed-up at {fp32_ms / floor:.1f}x"
        )
    int8 = [
        ev
        for ev in runnable_on(runs, len(runs.builds) - 1, host)
        if ev.runtime == "onnxruntime" and ev.precision == "int8"
    ]
    fp32_ops = print_breakdown(runs, "onnx-fp32", 1)
    if int8:
        best = min(int8, key=lambda ev: median_ratio(runs, ev.variant, t))
        ops = print_breakdown(runs, best.variant, 1)
        glue_txt = ""
        if ops and fp32_ops:
            glue = sum(ops.get(k, 0.0) for k in ("QuantizeLinear", "DequantizeLinear", "Pad"))
            glue_txt = (
                f"; profiled @1t it runs {ops['(nodes)']:.0f} nodes to fp32's "
                f"{fp32_ops['(nodes)']:.0f}, QuantizeLinear+DequantizeLinear+Pad "
                f"{glue / ops['(run)']:.0%} of its run"
            )
        runs.cause.append(
            f"the fastest ONNX Runtime int8 variant, {best.variant}, runs at "
            f"{1 / median_ratio(runs, best.variant, t):.2f}x fp32's speed @{t}t{glue_txt}"
        )


# ---------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0], formatter_class=argparse.RawTextHelpFormatter
    )
    add_workload_arguments(parser)
    parser.add_argument("--builds", type=int, default=3, help="builds per model (default 3)")
    parser.add_argument(
        "--quick", action="store_true", help="2 builds, 10 timed runs, short confirmation"
    )
    parser.add_argument(
        "--runs", type=int, default=None, help="timed runs per variant (default: the product's)"
    )
    parser.add_argument(
        "--confirm-rounds",
        type=int,
        default=30,
        help="alternating blocks of 10 runs re-timing the host's pick (0: off)",
    )
    parser.add_argument(
        "--onnx2tf-python", default=None, help="onnx2tf interpreter (default: .venv-tflite)"
    )
    parser.add_argument("--no-tflite", action="store_true", help="skip the LiteRT variants")
    parser.add_argument("--models", default="edge,cloud", help="edge,cloud or one of them")
    parser.add_argument("--json", type=Path, default=None, help="write every build report here")
    args = parser.parse_args()
    if args.quick:
        args.builds = min(args.builds, 2)
        args.runs = args.runs or 10
        args.confirm_rounds = min(args.confirm_rounds, 10)

    workload = Workload.from_args(args)
    roles = [r for r in ("edge", "cloud") if r in args.models.split(",")]
    missing = workload.missing(cloud="cloud" in roles)
    if missing:
        print("workload files missing: " + ", ".join(str(p) for p in missing), file=sys.stderr)
        return 2
    host, facts = host_profile()
    python, toolchain = litert_toolchain(args.onnx2tf_python)
    measure = MeasureConfig()
    if args.runs:
        measure = replace(measure, runs=args.runs, warmup=min(measure.warmup, 3))
    options = BuildOptions(measure=measure, onnx2tf=Onnx2TfConfig(python=python))
    has_tflite = not args.no_tflite and onnx2tf_python(options.onnx2tf) is not None
    print(
        f"host: {facts.cpu_model}, {facts.cores} cores, flags "
        f"{','.join(f for f in facts.cpu_flags if 'vnni' in f or 'amx' in f) or '-'}; profile "
        f"auto -> {host.name} ({host.threads} threads)"
    )
    print(
        f"builds: {args.builds} per model, {len(BUILTIN_PROFILES)} built-in profiles, "
        f"{measure.runs} timed runs (+{measure.warmup} warm-up) per variant and thread count"
    )
    print(f"{toolchain}; LiteRT variants {'on' if has_tflite else 'off'}")
    if workload.stand_in:
        print(f"(cloud role played by {workload.cloud_model}: a stand-in, not the teacher)")

    goals: list[tuple[str, bool]] = []
    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
        work = Path(tmp)
        models = [ModelRuns(role, workload.source(role)) for role in roles]
        x_test, y_test = workload.split("test")
        for b in range(args.builds):
            for runs in models:
                label = f"{runs.source.name} build {b + 1}/{args.builds}"
                print(f"\n-- {label}", flush=True)
                workdir = work / runs.role / f"b{b + 1}"
                start = time.perf_counter()
                report = build_model(
                    runs.source,
                    BUILTIN_PROFILES,
                    workdir,
                    progress=progress_printer(label, start),
                    include_tflite=has_tflite,
                    options=options,
                )
                seconds = time.perf_counter() - start
                runs.builds.append(report)
                runs.seconds.append(seconds)
                print(f"   {label}: wall time {seconds:.1f} s", flush=True)
                if b == 0:
                    test_accuracies(runs, report, x_test, y_test)

        differs: dict[str, list[str]] = {}
        for runs in models:
            print_table(
                runs, measure.threads_to_measure(tuple(p.threads for p in BUILTIN_PROFILES))
            )
            print_noise(
                runs, measure.threads_to_measure(tuple(p.threads for p in BUILTIN_PROFILES))
            )
            walls = ", ".join(f"{s:.1f}" for s in runs.seconds)
            print(f"   build wall times: {walls} s")
            differs[runs.source.name] = print_selections(runs, host)
        print()
        for runs in models:
            goals.append(speed_goal(runs, host, args.confirm_rounds))
            if not goals[-1][1]:
                speed_cause(runs, host, options, work, has_tflite)
        for runs in models:
            if runs.role == "cloud":
                goals += size_goals(runs)
        goals.append(stability_goal(models, differs))
        if args.json:
            args.json.write_text(
                json.dumps(
                    {r.source.name: [b.to_dict() for b in r.builds] for r in models}, indent=1
                )
            )

    print()
    causes = {r.goal_name: r.cause for r in models}
    for line, _ in goals:
        print(line)
        name = line.split(":", 1)[0].removeprefix("goal ")
        for cause in causes.get(name, []):
            print(f"  cause: {cause}")
    return 0 if all(ok for _, ok in goals) else 1


if __name__ == "__main__":
    sys.exit(main())
