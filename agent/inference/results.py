"""The ``--results`` listener: every answer as one JSON line."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from agent.inference.agent import InferenceEvent, Result


class ResultWriter:
    """Appends each Result as one JSON line (flushed, so readers see whole lines); failed
    frames have no answer and are not written."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")

    def __call__(self, event: InferenceEvent) -> None:
        if isinstance(event, Result):
            self._file.write(json.dumps(dataclasses.asdict(event)) + "\n")
            self._file.flush()

    def close(self) -> None:
        self._file.close()
