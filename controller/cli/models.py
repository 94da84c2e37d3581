"""`edgefleet model ...`: add source models, build variants, list models and variants."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from controller.cli.context import cli_context
from controller.cli.serving_plan_view import print_serving_plan, serving_plan_dict
from edgefleet.cli import OutputFormat, echo, errors_as_exit_codes, print_json, print_table

app = typer.Typer(help="Add models, build per-device variants, inspect them.", no_args_is_help=True)

FormatOption = typer.Option(OutputFormat.table, "--format", help="table or json")
UPLOAD_CHUNK = 256 * 1024


def _stub(ctx: typer.Context) -> tuple[Any, Any]:
    from controller.cli.client import open_channel
    from edgefleet.v1 import models_pb2_grpc

    conn = cli_context(ctx).connection()
    return conn, models_pb2_grpc.ModelAdminServiceStub(open_channel(conn))


def parse_ref(ref: str) -> tuple[str, int]:
    """``NAME`` or ``NAME:VERSION`` (version 0 = latest)."""
    from edgefleet.errors import InvalidInput

    name, sep, version = ref.partition(":")
    if not name or (sep and not version.isdigit()):
        raise InvalidInput(f"expected NAME or NAME:VERSION, not {ref!r}")
    return name, int(version) if sep else 0


def _check_onnx(path: Path) -> None:
    """Fail fast, before uploading anything, on a file that is not ONNX."""
    from controller.optimize.errors import BuildError
    from controller.optimize.source import load_onnx
    from edgefleet.errors import InvalidInput

    try:
        load_onnx(path)
    except BuildError as exc:
        raise InvalidInput(str(exc)) from exc


def _upload(conn: Any, stub: Any, path: Path) -> str:
    from controller.cli.client import call
    from edgefleet.errors import InvalidInput
    from edgefleet.v1 import models_pb2

    try:
        handle = path.open("rb")
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from exc

    def chunks() -> Iterator[Any]:
        with handle:
            while data := handle.read(UPLOAD_CHUNK):
                yield models_pb2.UploadArtifactChunk(data=data)

    return str(call(conn, stub.UploadArtifact, chunks()).sha256)


@app.command()
def add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Model name, e.g. digits."),
    onnx: Path = typer.Option(..., "--onnx", help="Source ONNX model."),
    validation: Path = typer.Option(..., "--validation", help=".npz with x (frames), y (labels)."),
    calibration: Path | None = typer.Option(None, "--calibration", help=".npz with x."),
    labels: Path | None = typer.Option(None, "--labels", help="Class names, one per line."),
    preprocess: Path | None = typer.Option(None, "--preprocess", help="Preprocessing JSON."),
    cloud_for: str = typer.Option("", "--cloud-for", help="Register as the cloud model of EDGE."),
) -> None:
    """Register the next version of NAME (prints NAME:VERSION)."""
    with errors_as_exit_codes():
        from controller.cli.client import call
        from edgefleet.errors import InvalidInput
        from edgefleet.v1 import models_pb2

        _check_onnx(onnx)
        try:
            names = labels.read_text().splitlines() if labels else []
            pre = preprocess.read_text() if preprocess else ""
        except OSError as exc:
            raise InvalidInput(f"cannot read {exc.filename}: {exc.strerror}") from exc
        from controller.services.model_files import check_npz

        for option, path, keys in (
            ("--validation", validation, ("x", "y")),
            ("--calibration", calibration, ("x",)),
        ):
            if path is None:
                continue
            if not path.is_file():
                raise InvalidInput(f"{option}: {path}: no such file")
            check_npz(path, keys, option)  # before anything is uploaded
        conn, stub = _stub(ctx)
        request = models_pb2.AddModelRequest(
            name=name,
            onnx_sha256=_upload(conn, stub, onnx),
            validation_sha256=_upload(conn, stub, validation),
            calibration_sha256=_upload(conn, stub, calibration) if calibration else "",
            labels=[n.strip() for n in names if n.strip()],
            preprocess_json=pre,
            cloud_for=cloud_for,
        )
        model = call(conn, stub.AddModel, request).model
        echo(f"{model.name}:{model.version}")


@app.command()
def build(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME or NAME:VERSION (default: latest)."),
    profiles: str = typer.Option("all", "--profiles", help="p1,p2 or all."),
    no_tflite: bool = typer.Option(False, "--no-tflite", help="Skip the TFLite variants."),
    variants: str = typer.Option("", "--variants", help="Build only these (v1,v2).", hidden=True),
    runs: int = typer.Option(
        0,
        "--runs",
        min=0,
        help="Timed runs of each variant, interleaved with as many of fp32, in rounds of at"
        " least 3 that each open fresh sessions; the rounds' spread is the latency interval."
        " A fast model gets extra rounds within runs x 20 ms (0: the controller's default, 25).",
    ),
    timeout: float = typer.Option(3600.0, "--timeout", help="Give up after this many seconds."),
    rebuild: bool = typer.Option(
        False,
        "--rebuild",
        help="A built version never changes: build its sources again as a new version"
        " (model list shows which one it rebuilt).",
    ),
    train_data: Path | None = typer.Option(
        None,
        "--train-data",
        help="Training frames (.npz with x, y, or an MNIST-style IDX directory) that the"
        " trained variants (QAT, channel-pruned, reduced-resolution) fine-tune on; without"
        " it they self-distil on the calibration frames.",
    ),
) -> None:
    """Build, measure, select per profile and sign; a progress bar per variant.

    A version that is already built is refused: releases never change, so a rollout of
    NAME:VERSION always installs the same files. Use --rebuild for a new version."""
    with errors_as_exit_codes():
        import grpc
        from rich.progress import Progress

        from edgefleet.errors import Unavailable
        from edgefleet.status import error_for
        from edgefleet.v1 import models_pb2

        name, version = parse_ref(ref)
        conn, stub = _stub(ctx)
        wanted = [] if profiles == "all" else [p.strip() for p in profiles.split(",") if p]
        training_sha256 = ""
        if train_data is not None:
            from controller.cli.training_data import upload_training_frames

            training_sha256 = upload_training_frames(conn, stub, train_data)
        request = models_pb2.BuildModelRequest(
            name=name,
            version=version,
            profiles=wanted,
            no_tflite=no_tflite,
            only_variants=[v for v in variants.split(",") if v],
            measure_runs=runs,
            rebuild=rebuild,
            training_sha256=training_sha256,
        )
        report: dict[str, Any] = {}
        steps = {"build": 1, "evaluate": 2}
        try:
            with Progress(transient=False) as bars:
                tasks: dict[str, Any] = {}
                for event in stub.BuildModel(request, timeout=timeout):
                    if event.HasField("report_json"):
                        report = json.loads(event.report_json)
                        continue
                    v, phase = event.progress.variant, event.progress.phase
                    if v not in tasks:
                        tasks[v] = bars.add_task(v, total=3)
                    done = steps.get(phase, 3)
                    label = v if done < 3 else f"{v} [{phase}]"
                    bars.update(tasks[v], completed=done, description=label)
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details()
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise Unavailable(f"controller at {conn.address}: {details}") from None
            raise error_for(code)(details) from None
        selections = report.get("selections", {})
        built = f"{report.get('model')}:{report.get('version')}"
        if rebuild:
            echo(f"built {built} (a new version rebuilt from {ref}, which is unchanged)")
        else:
            echo(f"built {built}")
        for profile, sel in sorted(selections.items()):
            echo(f"  {profile}: {sel.get('variant') or '(nothing fits)'}")


@app.command("list")
def list_models(ctx: typer.Context, output: OutputFormat = FormatOption) -> None:
    """Every model version."""
    with errors_as_exit_codes():
        from controller.cli.client import call
        from edgefleet.v1 import models_pb2

        conn, stub = _stub(ctx)
        models = call(conn, stub.ListModels, models_pb2.ListModelsRequest()).models
        rows = [_model_dict(m) for m in models]
        if output is OutputFormat.json:
            print_json(rows)
            return
        print_table(
            [
                "model",
                "role",
                "cloud for",
                "input",
                "classes",
                "build",
                "variants",
                "rebuild of",
                "serving",
            ],
            [
                [
                    f"{r['name']}:{r['version']}",
                    r["role"],
                    r["cloud_for"] or "-",
                    "x".join(str(d) for d in r["input_shape"]),
                    r["num_classes"],
                    r["build_status"] or "-",
                    r["variants_built"],
                    f"{r['name']}:{r['rebuilt_from']}" if r["rebuilt_from"] else "-",
                    r["serving_plan"]["summary"] if r["serving_plan"] else "-",
                ]
                for r in rows
            ],
        )


def _model_dict(m: Any) -> dict[str, Any]:
    return {
        "name": m.name,
        "version": m.version,
        "role": m.role,
        "cloud_for": m.cloud_for,
        "source_sha256": m.source_sha256,
        "input_name": m.input_name,
        "input_shape": list(m.input_shape),
        "input_dtype": m.input_dtype,
        "layout": m.layout,
        "num_classes": m.num_classes,
        "labels": list(m.labels),
        "preprocessing": json.loads(m.preprocess_json or "{}"),
        "build_status": m.build_status,
        "variants_built": m.variants_built,
        "rebuilt_from": m.rebuilt_from or None,
        "serving_plan": serving_plan_dict(m.serving_plan) if m.HasField("serving_plan") else None,
    }


TOO_CLOSE = "too close to"  # = controller.optimize.select.TOO_CLOSE (a test keeps them equal)


def latency_summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """Ratio to fp32 and the measured interval at the most threads measured (None: no rounds,
    e.g. a build from before latency intervals)."""
    from controller.optimize.latency import Latency

    stored = metrics.get("latency") or {}
    if not stored:
        return dict.fromkeys(
            (
                "latency_threads",
                "latency_ratio",
                "latency_ratio_interval",
                "latency_interval_ms",
                "latency_rounds",
            )
        )
    lat = Latency.from_dict(stored[max(stored, key=int)])
    return {
        "latency_threads": lat.threads,
        "latency_ratio": lat.ratio,
        "latency_ratio_interval": list(lat.ratio_interval) if lat.has_interval else None,
        "latency_interval_ms": list(lat.interval_ms) if lat.has_interval else None,
        "latency_rounds": len(lat.round_ratios),
    }


def cloud_table_summary(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """The variant's build-time cloud table, summed up (None: built without a cloud model)."""
    from controller.monitoring.estimate import CloudTable, table_summary

    stored = metrics.get("cloud_by_confidence")
    return table_summary(CloudTable.from_dict(stored)) if stored else None


def variants_dict(response: Any) -> dict[str, Any]:
    variants = []
    for v in response.variants:
        metrics = json.loads(v.metrics_json or "{}")
        variants.append(
            {
                "variant_id": v.variant_id,
                "variant": v.variant,
                "runtime": v.runtime,
                "precision": v.precision,
                "status": v.status,
                "reason": v.reason,
                "sha256": v.sha256,
                "size_bytes": v.size_bytes,
                "zstd_bytes": v.zstd_bytes,
                "latency_median_ms": v.latency_median_ms,
                "latency_p95_ms": v.latency_p95_ms,
                "accuracy": v.accuracy,
                "accuracy_drop_pp": v.accuracy_drop_pp,
                "agreement": v.agreement,
                "ece": v.ece,
                "temperature": v.temperature,
                **latency_summary(metrics),
                "cloud_by_confidence": cloud_table_summary(metrics),
                "metrics": metrics,
            }
        )
    selections = {
        s.profile: {
            "variant": s.variant or None,
            "variant_id": s.variant_id or None,
            "latency_ms": s.latency_ms if s.variant else None,
            "latency_source": s.latency_source,
            "target_path": s.target_path,
            "rejected": dict(sorted(s.rejected.items())),
            "too_close": sorted(k for k, why in s.rejected.items() if why.startswith(TOO_CLOSE)),
        }
        for s in response.selections
    }
    return {
        "model": _model_dict(response.model),
        "source_accuracy": response.source_accuracy,
        "variants": variants,
        "selections": selections,
    }


@app.command("variants")
def list_variants(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME:VERSION (or NAME for the latest)."),
    output: OutputFormat = FormatOption,
) -> None:
    """Every variant's measurements, and per profile the selection and why others lost."""
    with errors_as_exit_codes():
        from controller.cli.client import call
        from edgefleet.v1 import models_pb2

        name, version = parse_ref(ref)
        conn, stub = _stub(ctx)
        data = variants_dict(
            call(
                conn, stub.ListVariants, models_pb2.ListVariantsRequest(name=name, version=version)
            )
        )
        if data["model"]["role"] == "edge":  # its hard-example policy (cli/hard_examples.py)
            from controller.cli.hard_examples import fetch_policy, summary_line

            data["hard_examples"] = fetch_policy(conn, stub, name)
        if output is OutputFormat.json:
            print_json(data)
            return
        print_variants_table(data)
        if data.get("hard_examples"):
            echo(summary_line(data["hard_examples"]))


def _ratio_text(v: dict[str, Any]) -> str:
    """``0.97 [0.93..1.02]``: latency over fp32, median and interval of the rounds."""
    ratio, spread = v.get("latency_ratio"), v.get("latency_ratio_interval")
    if ratio is None:
        return "-"
    return f"{ratio:.2f} [{spread[0]:.2f}..{spread[1]:.2f}]" if spread else f"{ratio:.2f}"


def print_variants_table(data: dict[str, Any]) -> None:
    model = data["model"]
    origin = (
        f" (rebuild of {model['name']}:{model['rebuilt_from']})"
        if model.get("rebuilt_from")
        else ""
    )
    echo(
        f"{model['name']}:{model['version']}{origin}  source accuracy {data['source_accuracy']:.2%}"
    )
    if model["role"] == "cloud":
        if model["serving_plan"]:
            print_serving_plan(model["serving_plan"])
        else:
            echo("serving plan: not served yet (measured when first loaded for an offload)")
    rows = []
    for v in data["variants"]:
        if v["status"] != "built":
            rows.append([v["variant"], v["status"], *[""] * 10, v["reason"]])
            continue
        interval = v.get("latency_interval_ms")
        rows.append(
            [
                v["variant"],
                v["status"],
                v["size_bytes"],
                v["zstd_bytes"],
                f"{v['latency_median_ms']:.4g}",
                f"{interval[0]:.4g}..{interval[1]:.4g}" if interval else "-",
                f"{v['latency_p95_ms']:.4g}",
                _ratio_text(v),
                f"{v['accuracy']:.2%}",
                f"{v['accuracy_drop_pp']:+.2f}",
                f"{v['agreement']:.2%}",
                f"{v['ece']:.4f}",
                "",
            ]
        )
    print_table(
        [
            "variant",
            "status",
            "size",
            "zstd",
            "p50 ms",
            "interval ms",
            "p95 ms",
            "x fp32",
            "acc",
            "drop pp",
            "agree",
            "ece",
            "note",
        ],
        rows,
    )
    echo("")
    for profile, sel in data["selections"].items():
        chosen = sel["variant"] or "(nothing fits)"
        where = f" ({sel['latency_ms']:.4g} ms, {sel['latency_source']})" if sel["variant"] else ""
        echo(f"{profile}: {chosen}{where}")
        if sel["too_close"]:
            echo(
                f"    too close to {chosen} to separate, so the smaller compressed file won: "
                + ", ".join(sel["too_close"])
            )
        for variant, why in sel["rejected"].items():
            echo(f"    - {variant}: {why}")
    print_cloud_tables(data["variants"])


def print_cloud_tables(variants: list[dict[str, Any]]) -> None:
    """One line per built variant: how right the cloud is where this variant is unsure."""
    built = [v for v in variants if v["status"] == "built"]
    if built and not any(v.get("cloud_by_confidence") for v in built):
        echo("cloud by edge confidence: not measured (no cloud model registered at build time)")
    for v in built:
        t = v.get("cloud_by_confidence")
        if not t or not t["hard_frames"]:
            continue
        echo(
            f"{v['variant']}: on its {t['hard_frames']} least confident of {t['frames']} "
            f"validation frames {t['cloud_model']} is right {t['cloud_accuracy_hard']:.1%}, "
            f"the edge {t['edge_accuracy_hard']:.1%}; on the rest "
            f"{t['cloud_accuracy_confident']:.1%} and {t['edge_accuracy_confident']:.1%}"
        )
