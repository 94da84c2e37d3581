"""Health gates: tiny, safe expressions evaluated on canary vs baseline cohort metrics.

Grammar (no eval)::

    gate  := METRIC OP right
    OP    := "<=" | "<" | ">=" | ">"
    right := NUMBER | "baseline" | NUMBER "*" "baseline" | "baseline" "*" NUMBER
           | "baseline" ("+" | "-") NUMBER

"baseline" is the control cohort's value (same profile, still on the old version), or the
canary devices' own pre-rollout value when no control cohort exists. A baseline cohort that
reported telemetry without the gate's metric makes the gate "not applicable" (it passes,
saying so); one that has not reported yet makes it wait.

METRIC must be one of ``controller.rollout.metrics.GATE_METRICS`` (``check_gate_metrics``
refuses the others when a rollout starts). A metric measured with an interval
(``estimated_accuracy``) passes only when the whole interval satisfies the gate, fails only
when none of it does, and otherwise waits for more evidence; its baseline is the baseline
cohort's point estimate.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.rollout.errors import InvalidGate
from controller.rollout.metrics import GATE_METRICS, check_metric, known_metrics

PASS = "pass"
FAIL = "fail"
INSUFFICIENT = "insufficient"

OPERATORS = ("<=", ">=", "<", ">")
_TOKEN = re.compile(
    r"\s*(?:(<=|>=|<|>|\*|\+|-)|([A-Za-z_][A-Za-z0-9_]*)|(\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+))"
)
_UNITS = {"latency": "ms"}

DEFAULT_GATES: tuple[str, ...] = (
    "p95_latency <= 1.2 * baseline",  # on-device inference latency, not end to end
    "agreement >= baseline - 0.01",
    "error_rate <= 0.01",
    "offload_rate <= baseline + 0.05",
)


@dataclass(frozen=True)
class Gate:
    """A parsed gate: ``metric op factor * baseline + offset`` (or ``op offset`` if absolute)."""

    text: str
    metric: str
    op: str
    uses_baseline: bool
    factor: float = 1.0
    offset: float = 0.0

    def threshold(self, baseline: float | None) -> float:
        if not self.uses_baseline:
            return self.offset
        if baseline is None:
            raise InvalidGate(f"gate {self.text!r} needs a baseline value")
        return self.factor * baseline + self.offset

    def holds(self, value: float, threshold: float) -> bool:
        return {
            "<=": value <= threshold,
            "<": value < threshold,
            ">=": value >= threshold,
            ">": value > threshold,
        }[self.op]


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    stripped = text.rstrip()
    while pos < len(stripped):
        m = _TOKEN.match(stripped, pos)
        if m is None or m.end() == pos:
            raise InvalidGate(f"gate {text!r}: unexpected character at position {pos + 1}")
        op, name, number = m.groups()
        if op is not None:
            out.append(("op", op))
        elif name is not None:
            out.append(("name", name))
        else:
            out.append(("number", number))
        pos = m.end()
    return out


def parse_gate(text: str) -> Gate:
    """Parse one gate expression; raise ``InvalidGate`` saying what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidGate("gate expression is empty")
    toks = _tokens(text)
    if len(toks) < 3:
        raise InvalidGate(f"gate {text!r}: expected 'metric <op> right side'")
    (kind0, metric), (kind1, op), rest = toks[0], toks[1], toks[2:]
    if kind0 != "name" or metric == "baseline":
        raise InvalidGate(f"gate {text!r}: must start with a metric name")
    if kind1 != "op" or op not in OPERATORS:
        raise InvalidGate(f"gate {text!r}: expected one of {', '.join(OPERATORS)} after {metric}")
    shape = [k if k != "name" else ("baseline" if v == "baseline" else "name") for k, v in rest]
    values = [v for _, v in rest]
    if "name" in shape:
        bad = values[shape.index("name")]
        raise InvalidGate(f"gate {text!r}: unknown name {bad!r} (only 'baseline' may appear)")
    if shape == ["number"]:
        return Gate(text, metric, op, False, offset=float(values[0]))
    if shape == ["baseline"]:
        return Gate(text, metric, op, True)
    if shape == ["number", "op", "baseline"] and values[1] == "*":
        return Gate(text, metric, op, True, factor=float(values[0]))
    if shape == ["baseline", "op", "number"] and values[1] == "*":
        return Gate(text, metric, op, True, factor=float(values[2]))
    if shape == ["baseline", "op", "number"] and values[1] in "+-":
        sign = 1.0 if values[1] == "+" else -1.0
        return Gate(text, metric, op, True, offset=sign * float(values[2]))
    raise InvalidGate(
        f"gate {text!r}: right side must be NUMBER, baseline, NUMBER * baseline "
        "or baseline +/- NUMBER"
    )


def check_gate_metrics(gates: Iterable[str]) -> None:
    """Parse every gate and refuse a metric nothing measures (when a rollout is created;
    rollouts stored before the check existed still load, and say why such a gate waits)."""
    for text in gates:
        gate = parse_gate(text)
        check_metric(gate.text, gate.metric)


@dataclass(frozen=True)
class CohortMetrics:
    """Aggregated metrics of one cohort: metric name -> value, plus how much data backs them."""

    values: Mapping[str, float] = field(default_factory=dict)
    samples: int = 0  # frames
    devices: int = 0
    # metric name -> (low, high) 95% interval, for metrics measured with one
    intervals: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "values": dict(self.values),
            "samples": self.samples,
            "devices": self.devices,
            "intervals": {k: [lo, hi] for k, (lo, hi) in self.intervals.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CohortMetrics:
        return cls(
            {str(k): float(v) for k, v in dict(data.get("values", {})).items()},
            int(data.get("samples", 0)),
            int(data.get("devices", 0)),
            {
                str(k): (float(v[0]), float(v[1]))
                for k, v in dict(data.get("intervals", {})).items()
            },
        )


@dataclass(frozen=True)
class GateInputs:
    """The cohorts a gate compares: canary, control (same profile, old version), pre-rollout."""

    canary: CohortMetrics
    control: CohortMetrics | None = None
    pre_rollout: CohortMetrics | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "canary": self.canary.to_dict(),
            "control": self.control.to_dict() if self.control else None,
            "pre_rollout": self.pre_rollout.to_dict() if self.pre_rollout else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateInputs:
        def opt(key: str) -> CohortMetrics | None:
            return CohortMetrics.from_dict(data[key]) if data.get(key) else None

        return cls(CohortMetrics.from_dict(data["canary"]), opt("control"), opt("pre_rollout"))


@dataclass(frozen=True)
class GateResult:
    gate: str
    metric: str
    status: str  # pass | fail | insufficient
    value: float | None
    threshold: float | None
    reason: str
    low: float | None = None  # the value's 95% interval, for interval metrics
    high: float | None = None

    @property
    def passed(self) -> bool:
        return self.status == PASS

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateResult:
        return cls(**dict(data))


def _fmt(metric: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    unit = next((u for key, u in _UNITS.items() if key in metric), "")
    return f"{value:.4g} {unit}".rstrip()


def _short(name: str, cohort: CohortMetrics, min_samples: int, min_devices: int) -> str | None:
    if cohort.samples < min_samples:
        return f"{name} has {cohort.samples} of {min_samples} frames"
    if cohort.devices < min_devices:
        return f"{name} has {cohort.devices} of {min_devices} devices"
    return None


def evaluate_gate(
    gate: Gate,
    inputs: GateInputs,
    *,
    min_samples: int = 0,
    min_devices: int = 1,
    first_install: bool = False,
) -> GateResult:
    """Evaluate one gate; too little data or a missing metric yields ``insufficient``.

    A gate relative to the baseline that has nothing to compare with passes, saying it is
    not applicable, rather than waiting forever: on a first install (no device had a model
    before), and when the baseline cohort has reported telemetry (enough of it) but without
    this metric (its model produced none). A baseline that has not reported yet waits."""

    def waiting(why: str, value: float | None = None) -> GateResult:
        return GateResult(
            gate.text,
            gate.metric,
            INSUFFICIENT,
            value,
            None,
            f"gate {gate.metric}: waiting for data ({why})",
        )

    known = GATE_METRICS.get(gate.metric)
    if known is None:  # a rollout stored before metric names were checked
        return waiting(f"nothing measures {gate.metric!r}; known metrics: {known_metrics()}")
    short = _short("canary", inputs.canary, min_samples, min_devices)
    if short:
        return waiting(short)
    value = inputs.canary.values.get(gate.metric)
    interval = inputs.canary.intervals.get(gate.metric) if known.interval else None
    if known.interval and interval is None:
        return waiting(f"canary reports no {gate.metric} interval", value)
    if interval is None and (value is None or not math.isfinite(value)):
        return waiting(f"canary reports no {gate.metric}")
    baseline: float | None = None
    if gate.uses_baseline:
        source = "control" if inputs.control is not None else "pre-rollout"
        cohort = inputs.control if inputs.control is not None else inputs.pre_rollout

        def not_applicable(why: str) -> GateResult:
            return GateResult(
                gate.text, gate.metric, PASS, value, None,
                f"gate {gate.metric} {_fmt(gate.metric, value)}: {why}, not applicable",
            )  # fmt: skip

        if cohort is None and first_install:
            return not_applicable("no baseline on a first install")
        if cohort is None:
            return waiting("no control cohort and no pre-rollout values", value)
        short = _short(source, cohort, min_samples, min_devices)
        if short:
            return waiting(short, value)
        baseline = cohort.values.get(gate.metric)
        if (baseline is None or not math.isfinite(baseline)) and cohort.samples > 0:
            # The baseline cohort has reported, but its model produced no value for this
            # metric (e.g. no cloud model, so no agreement): nothing to compare with.
            return not_applicable(
                f"{source} reported {cohort.samples} frames but no {gate.metric}, no baseline"
            )
        if baseline is None or not math.isfinite(baseline):
            return waiting(f"{source} reports no {gate.metric}", value)
    threshold = gate.threshold(baseline)
    if interval is not None:
        return _evaluate_interval(gate, value, interval, threshold, baseline)
    if value is None:  # unreachable: checked above; keeps the types honest
        return waiting(f"canary reports no {gate.metric}")
    ok = gate.holds(value, threshold)
    verdict = "passed" if ok else "failed"
    shown = f"{_fmt(gate.metric, value)} {gate.op} {_fmt(gate.metric, threshold)}"
    reason = f"gate {gate.metric} {shown} {verdict}"
    if baseline is not None:
        reason += f" (baseline {_fmt(gate.metric, baseline)})"
    return GateResult(gate.text, gate.metric, PASS if ok else FAIL, value, threshold, reason)


def _evaluate_interval(
    gate: Gate,
    value: float | None,
    interval: tuple[float, float],
    threshold: float,
    baseline: float | None,
) -> GateResult:
    """Pass when the whole interval satisfies the gate, fail when none of it does."""
    low, high = interval
    at_low, at_high = gate.holds(low, threshold), gate.holds(high, threshold)
    m = gate.metric
    shown = f"{_fmt(m, value)} [{_fmt(m, low)}, {_fmt(m, high)}] {gate.op} {_fmt(m, threshold)}"
    if at_low and at_high:
        status, verdict = PASS, "passed (the whole 95% interval)"
    elif not at_low and not at_high:
        status, verdict = FAIL, "failed (the whole 95% interval)"
    else:
        status = INSUFFICIENT
        verdict = "undecided: the 95% interval straddles the threshold, waiting for more evidence"
    reason = f"gate {m} {shown} {verdict}"
    if baseline is not None:
        reason += f" (baseline {_fmt(m, baseline)})"
    return GateResult(gate.text, m, status, value, threshold, reason, low, high)


def evaluate_gates(
    gates: Iterable[Gate | str],
    inputs: GateInputs,
    *,
    min_samples: int = 0,
    min_devices: int = 1,
    first_install: bool = False,
) -> list[GateResult]:
    return [
        evaluate_gate(
            g if isinstance(g, Gate) else parse_gate(g),
            inputs,
            min_samples=min_samples,
            min_devices=min_devices,
            first_install=first_install,
        )
        for g in gates
    ]
