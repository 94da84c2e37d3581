"""Device selectors for rollout targets: set-based label requirements, ANDed.

Grammar (the Kubernetes label-selector forms; no eval, a strict hand-written parser)::

    selector    := requirement ("," requirement)*      (empty: every device)
    requirement := KEY ("=" | "==" | "!=") VALUE
                 | KEY ("in" | "notin") "(" VALUE ("," VALUE)* ")"
                 | KEY                                  (the label exists)
                 | "!" KEY                              (the label does not exist)
    KEY, VALUE  := letters, digits and - _ . /

A parsed selector is a tuple of ``Requirement`` values that round-trip through plain dicts,
so the rollout spec stores it in the form ``matches`` evaluates, purely.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.rollout.errors import RolloutError
from edgefleet.errors import InvalidInput

OPS = ("=", "!=", "in", "notin", "exists", "!exists")
_TOKEN = re.compile(r"\s*(?:(!=|==|=|!|\(|\)|,)|([A-Za-z0-9_./-]+))")


class InvalidSelector(RolloutError, InvalidInput):
    """A device selector could not be parsed; the message says where and why."""


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # one of OPS
    values: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise InvalidSelector(f"unknown selector operator {self.op!r}")
        want_values = self.op in ("=", "!=", "in", "notin")
        if want_values != bool(self.values) or (self.op in ("=", "!=") and len(self.values) != 1):
            raise InvalidSelector(f"selector {self.op!r} on {self.key!r}: wrong number of values")

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        if self.op == "exists":
            return value is not None
        if self.op == "!exists":
            return value is None
        if self.op in ("=", "in"):
            return value is not None and value in self.values
        return value not in self.values  # != and notin also match a device without the label

    def to_text(self) -> str:
        if self.op == "exists":
            return self.key
        if self.op == "!exists":
            return f"!{self.key}"
        if self.op in ("=", "!="):
            return f"{self.key}{self.op}{self.values[0]}"
        return f"{self.key} {self.op} ({','.join(self.values)})"

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "op": self.op, "values": list(self.values)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Requirement:
        try:
            return cls(str(data["key"]), str(data["op"]), tuple(str(v) for v in data["values"]))
        except (KeyError, TypeError) as exc:
            raise InvalidSelector(f"stored selector requirement {dict(data)!r}: {exc}") from exc


Selector = tuple[Requirement, ...]


def matches(selector: Sequence[Requirement], labels: Mapping[str, str]) -> bool:
    return all(r.matches(labels) for r in selector)


def selector_text(selector: Sequence[Requirement]) -> str:
    return ",".join(r.to_text() for r in selector)


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []
    pos, end = 0, len(text.rstrip())
    while pos < end:
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise InvalidSelector(
                f"selector {text!r}: unexpected {text[pos:].strip()[:1]!r} at position {pos + 1}"
            )
        punct, word = m.groups()
        out.append(("punct", punct, m.start(1) + 1) if punct else ("word", word, m.start(2) + 1))
        pos = m.end()
    return out


def parse_selector(text: str) -> Selector:
    """Parse a selector expression; raise ``InvalidSelector`` saying what is wrong where."""
    toks = _tokens(text)
    i = 0

    def fail(expected: str) -> InvalidSelector:
        if i >= len(toks):
            return InvalidSelector(f"selector {text!r}: expected {expected} at the end")
        _, value, at = toks[i]
        return InvalidSelector(f"selector {text!r}: expected {expected}, not {value!r} at {at}")

    def take(kind: str, expected: str, value: str | None = None) -> str:
        nonlocal i
        if i >= len(toks) or toks[i][0] != kind or (value is not None and toks[i][1] != value):
            raise fail(expected)
        i += 1
        return toks[i - 1][1]

    def peek(value: str) -> bool:
        return i < len(toks) and toks[i][1] == value

    out: list[Requirement] = []
    while i < len(toks):
        if peek("!"):
            i += 1
            out.append(Requirement(take("word", "a label key after '!'"), "!exists"))
        else:
            key = take("word", "a label key")
            if peek("=") or peek("==") or peek("!="):
                op = "!=" if toks[i][1] == "!=" else "="
                i += 1
                out.append(Requirement(key, op, (take("word", f"a value after {key}{op}"),)))
            elif i < len(toks) and toks[i][0] == "word" and toks[i][1] in ("in", "notin"):
                op = toks[i][1]
                i += 1
                take("punct", f"'(' after {key} {op}", "(")
                values = [take("word", "a value")]
                while peek(","):
                    i += 1
                    values.append(take("word", "a value after ','"))
                take("punct", "',' or ')'", ")")
                out.append(Requirement(key, op, tuple(values)))
            else:
                out.append(Requirement(key, "exists"))
        if i < len(toks):
            take("punct", "',' between requirements", ",")
            if i >= len(toks):
                raise fail("a requirement after ','")
    return tuple(out)


def selector_from_data(data: Any) -> Selector:
    """A stored or given selector: a list of requirement dicts, an expression, or a
    ``{key: value}`` mapping (equalities; how rollouts stored their selector before)."""
    if isinstance(data, str):
        return parse_selector(data)
    if isinstance(data, Mapping):
        return tuple(Requirement(str(k), "=", (str(v),)) for k, v in sorted(data.items()))
    if isinstance(data, Sequence):
        return tuple(r if isinstance(r, Requirement) else Requirement.from_dict(r) for r in data)
    raise InvalidSelector(f"selector must be an expression or requirements, not {data!r}")
