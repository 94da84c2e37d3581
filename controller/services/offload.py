"""Cloud models for offloaded frames: where they come from, batching, labelled-pair counts.

Cloud models come from two sources, looked up in order: the operator's static
``--cloud-model EDGE_MODEL=PATH/cloud.onnx[:preprocess.json][?batch=16&delay_ms=2&queue=256]``
specs (or ``EDGE_MODEL=triton+http://HOST:PORT/MODEL:preprocess.json``: a Triton/KServe v2
server serves it, controller.serving.triton), then the model registry (any object with
``cloud_model_for(edge_model)`` returning something with an ONNX path, a Preprocessing and
labels, or None). Each model is loaded once
and served per its serving plan (controller.serving.plan): measured on this host when loaded
(static specs at start; registry models on first use, served by direct calls until their
measurement is done, in the background), or fixed by the operator.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs

from controller.errors import ConfigError
from controller.serving.cloud_model import CloudModel, Predictor
from controller.serving.errors import ServingFailure
from controller.serving.measure import DEFAULT_BUDGET_S
from controller.serving.plan import ServingPlan, operator_plan, pending_plan
from controller.serving.served import ServedModel, measure_plan
from controller.serving.triton import TritonModel
from edgefleet.modelmeta import Preprocessing

log = logging.getLogger(__name__)

MAX_REMEMBERED_MISSES = 1024  # model names found in no registry, kept to skip re-asking it


@dataclass(frozen=True)
class BatchingConfig:
    """``max_batch_size``/``max_queue_delay_ms`` None: chosen by measuring the model when it
    is loaded (controller.serving.plan); either one set: the operator's fixed batching."""

    max_batch_size: int | None = None
    max_queue_delay_ms: float | None = None
    max_queue_size: int = 256  # beyond it: RESOURCE_EXHAUSTED
    threads: int = 0  # ONNX Runtime intra-op threads; 0 = its default
    measure_budget_s: float = DEFAULT_BUDGET_S  # time spent measuring batch sizes per load

    @property
    def operator_fixed(self) -> bool:
        return self.max_batch_size is not None or self.max_queue_delay_ms is not None


@dataclass(frozen=True)
class CloudModelSpec:
    edge_model: str
    path: Path  # the ONNX file; for a Triton server, the model's name there
    preprocess_file: Path | None = None
    batching: BatchingConfig | None = None  # None: the controller-wide defaults
    triton_url: str = ""  # HOST:PORT of a Triton/KServe v2 server that serves the model


TRITON_SCHEME = "triton+http://"


def parse_cloud_model_spec(text: str, defaults: BatchingConfig | None = None) -> CloudModelSpec:
    """``NAME=PATH.onnx[:preprocess.json][?batch=N&delay_ms=MS&queue=N&threads=N]``."""
    name, sep, rest = text.partition("=")
    if not sep or not name.strip() or not rest:
        raise ConfigError(f"cloud model must be EDGE_MODEL=PATH[:preprocess.json]: {text!r}")
    rest, _, query = rest.partition("?")
    path, pre = rest, None
    head, colon, tail = rest.rpartition(":")
    if colon and tail.endswith(".json"):
        path, pre = head, Path(tail).expanduser()
    batching = None
    if query:
        base = defaults or BatchingConfig()
        try:
            q = {k: v[-1] for k, v in parse_qs(query, strict_parsing=True).items()}
            batch, delay = q.pop("batch", None), q.pop("delay_ms", None)
            batching = replace(
                base,
                max_batch_size=int(batch) if batch is not None else base.max_batch_size,
                max_queue_delay_ms=float(delay) if delay is not None else base.max_queue_delay_ms,
                max_queue_size=int(q.pop("queue", base.max_queue_size)),
                threads=int(q.pop("threads", base.threads)),
            )
        except ValueError as exc:
            raise ConfigError(f"bad batching options in {text!r}: {exc}") from exc
        if q:
            raise ConfigError(f"unknown cloud model options {sorted(q)} in {text!r}")
    if path.startswith(TRITON_SCHEME):
        address, _, model = path[len(TRITON_SCHEME) :].partition("/")
        if not address or not model or pre is None:
            raise ConfigError(
                f"a Triton cloud model is EDGE_MODEL={TRITON_SCHEME}HOST:PORT/MODEL:"
                f"preprocess.json (labels.txt next to it): {text!r}"
            )
        return CloudModelSpec(name.strip(), Path(model), pre, batching, triton_url=address)
    return CloudModelSpec(name.strip(), Path(path).expanduser(), pre, batching)


def load_cloud_model(
    path: Path, model_id: str, preprocessing: Preprocessing | None, labels: Sequence[str] | None,
    threads: int = 0, preprocess_file: Path | None = None,
) -> CloudModel:  # fmt: skip
    """An ONNX cloud model; preprocessing/labels default to files next to it."""
    from controller.optimize.source import load_preprocessing

    if not path.is_file():
        raise ConfigError(f"cloud model file {path} does not exist")
    if preprocessing is None:
        pre_file = preprocess_file or path.parent / "preprocess.json"
        try:
            preprocessing = load_preprocessing(pre_file)
        except Exception as exc:
            raise ConfigError(f"cloud model {path}: {exc}") from exc
    if labels is None:
        labels_file = path.parent / "labels.txt"
        lines = labels_file.read_text().splitlines() if labels_file.is_file() else []
        labels = [line.strip() for line in lines if line.strip()]  # names may hold spaces
    return CloudModel(path, preprocessing, model_id, labels, threads=threads or None)


class ModelRegistry(Protocol):
    def cloud_model_for(self, edge_model: str) -> Any: ...


class CloudModels(Mapping[str, Predictor]):
    """Edge model name -> served cloud predictor, loaded lazily (what OffloadServicer reads)."""

    def __init__(
        self,
        specs: Sequence[CloudModelSpec],
        defaults: BatchingConfig | None = None,
        registry: Callable[[], ModelRegistry | None] = lambda: None,
    ) -> None:
        self.defaults = defaults or BatchingConfig()
        self._specs = {s.edge_model: s for s in specs}
        self._registry = registry
        self._loaded: dict[str, ServedModel] = {}
        self._missing: dict[str, float] = {}  # registry misses, retried after a while
        self._lock = threading.Lock()

    def __getitem__(self, name: str) -> Predictor:
        model = self._get(name)
        if model is None:
            raise KeyError(name)
        return model

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(set(self._specs) | set(self._loaded)))

    def __len__(self) -> int:
        return len(set(self._specs) | set(self._loaded))

    def served(self) -> dict[str, ServedModel]:
        """The models loaded so far, by edge model name (never loads one)."""
        with self._lock:
            return dict(self._loaded)

    def plan_for(self, model_ref: str) -> ServingPlan | None:
        """The serving plan of the loaded cloud model ``NAME:VERSION`` (None: not served)."""
        return next((m.plan for m in self.served().values() if m.model_id == model_ref), None)

    def add_spec(self, spec: CloudModelSpec) -> None:
        """Serve (or replace) a cloud model at run time; loaded now, errors raised here."""
        with self._lock:
            self._specs[spec.edge_model] = spec
            self._missing.pop(spec.edge_model, None)
        self._install(spec.edge_model)

    def preload(self) -> None:
        """Load (and measure) every statically configured model now: errors and serving plans
        surface at start, not per RPC."""
        for name in list(self._specs):
            self._install(name)

    def _install(self, name: str) -> None:
        model = self._load_or_raise(name)  # outside the lock: measuring takes seconds
        with self._lock:
            previous = self._loaded.pop(name, None)
            self._loaded[name] = model
        if previous is not None:
            previous.close()

    def _load_or_raise(self, name: str) -> ServedModel:
        model = self._load(name, measure_now=True)
        if model is None:
            raise ConfigError(f"no cloud model for {name}")
        return model

    def _get(self, name: str) -> ServedModel | None:
        with self._lock:
            if (model := self._loaded.get(name)) is not None:
                return model
            if time.monotonic() - self._missing.get(name, -1e9) < 5.0:
                return None
            try:
                model = self._load(name, measure_now=False)  # in an RPC: measure aside
            except Exception as exc:  # a bad model must not take the RPC thread down
                log.error("cannot load cloud model for %s: %s", name, exc)
                model = None
            if model is None:
                self._remember_miss(name)
                return None
            self._loaded[name] = model
            return model

    def _remember_miss(self, name: str) -> None:
        """Keep a missed name (not retried for a while), at most MAX_REMEMBERED_MISSES of them:
        names come from devices, so the oldest misses go first (they are only looked up again).
        """
        self._missing.pop(name, None)
        self._missing[name] = time.monotonic()
        while len(self._missing) > MAX_REMEMBERED_MISSES:
            del self._missing[next(iter(self._missing))]

    def _load(self, name: str, measure_now: bool) -> ServedModel | None:
        spec = self._specs.get(name)
        if spec is not None and spec.triton_url:
            triton = triton_model(spec, f"{name}:triton")
            served = ServedModel(
                triton, triton.plan(), (spec.batching or self.defaults).max_queue_size
            )
            _log_plan(name, served)
            return served
        if spec is not None:
            batching = spec.batching or self.defaults
            model = load_cloud_model(
                spec.path, f"{name}:cloud", None, None, batching.threads, spec.preprocess_file
            )
        else:
            registry = self._registry()
            info = registry.cloud_model_for(name) if registry is not None else None
            if info is None:
                return None
            batching = self.defaults
            path = Path(getattr(info, "onnx_path", None) or info.path)
            model = load_cloud_model(
                path,
                f"{getattr(info, 'name', name)}:{getattr(info, 'version', 'cloud')}",
                getattr(info, "preprocessing", None),
                getattr(info, "labels", None),
                batching.threads,
            )
        if batching.operator_fixed:
            plan = operator_plan(batching.max_batch_size, batching.max_queue_delay_ms)
        elif measure_now:
            plan = measure_plan(model, batching.measure_budget_s)
        else:
            plan = pending_plan()
        served = ServedModel(model, plan, batching.max_queue_size)
        _log_plan(name, served)
        if plan.source == "pending":
            threading.Thread(
                target=_measure_aside,
                args=(name, served, batching.measure_budget_s),
                name=f"measure-{name}",
                daemon=True,
            ).start()
        return served

    def close(self) -> None:
        with self._lock:
            for model in self._loaded.values():
                model.close()
            self._loaded.clear()


def triton_model(spec: CloudModelSpec, model_id: str) -> TritonModel:
    """The spec's model on its Triton server, checked ready (ConfigError if not)."""
    from controller.optimize.source import load_preprocessing

    assert spec.preprocess_file is not None  # parse_cloud_model_spec requires it
    try:
        preprocessing = load_preprocessing(spec.preprocess_file)
    except Exception as exc:
        raise ConfigError(f"cloud model {spec.edge_model}: {exc}") from exc
    labels_file = spec.preprocess_file.parent / "labels.txt"
    lines = labels_file.read_text().splitlines() if labels_file.is_file() else []
    model = TritonModel(
        spec.triton_url, str(spec.path), preprocessing, model_id,
        [line.strip() for line in lines if line.strip()],
    )  # fmt: skip
    try:
        model.check_ready()
    except ServingFailure as exc:
        raise ConfigError(str(exc)) from exc
    return model


def _log_plan(name: str, served: ServedModel) -> None:
    plan = served.plan
    log.info(
        "cloud model for %s (%s): %s, queue %d: %s",
        name, served.model_id, plan.summary(), served.max_queue_size, plan.reason,
    )  # fmt: skip


def _measure_aside(name: str, served: ServedModel, budget_s: float) -> None:
    """Measure a model loaded in an RPC (served by direct calls meanwhile), then apply."""
    try:
        if not isinstance(served.model, CloudModel):
            return  # served elsewhere, not measured here
        served.apply(measure_plan(served.model, budget_s))
    except Exception:
        log.exception("measuring the serving plan of %s failed: it stays a direct call", name)
        return
    _log_plan(name, served)


@dataclass(frozen=True)
class LabelledPair:
    """The edge model's answer and the cloud's, for one offloaded or audited frame."""

    device_id: str
    model: str
    edge_variant_id: str
    frame_id: str
    edge_label: int
    edge_confidence: float
    cloud_label: int
    cloud_confidence: float
    cloud_model_id: str
    audit: bool


@dataclass
class PairCounts:
    offload_pairs: int = 0
    offload_agreed: int = 0
    audit_pairs: int = 0
    audit_agreed: int = 0


class OffloadPairs:
    """Per-device counts of the labelled pairs the controller answered (a cross-check of the
    agents' own agreement telemetry, which is the source of truth for accuracy)."""

    def __init__(self) -> None:
        self._counts: dict[str, PairCounts] = {}
        self._lock = threading.Lock()

    def record(self, pair: LabelledPair) -> None:
        agreed = int(pair.edge_label == pair.cloud_label)
        with self._lock:
            c = self._counts.setdefault(pair.device_id, PairCounts())
            if pair.audit:
                c.audit_pairs += 1
                c.audit_agreed += agreed
            else:
                c.offload_pairs += 1
                c.offload_agreed += agreed

    def counts(self) -> dict[str, PairCounts]:
        with self._lock:
            return {k: PairCounts(**vars(v)) for k, v in self._counts.items()}
