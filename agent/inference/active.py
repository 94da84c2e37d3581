"""The model the agent runs now: empty until the first one is loaded, swapped atomically,
and every change heard by its listeners (telemetry, MQTT heartbeats, the offload policy)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from agent.inference.errors import NoModelYet
from agent.runtime.model import LoadedModel, load_variant

log = logging.getLogger(__name__)

ModelListener = Callable[[LoadedModel], None]


class ActiveModel:
    """Load a variant fully, then swap it in: a frame takes ``current()`` once and finishes
    on that model, so no frame is dropped during a swap."""

    def __init__(self, threads: int | None, listeners: list[ModelListener] | None = None) -> None:
        self.threads = threads
        self.listeners: list[ModelListener] = listeners if listeners is not None else []
        self._model: LoadedModel | None = None
        self._changed = threading.Condition()

    def current(self) -> LoadedModel:
        with self._changed:
            if self._model is None:
                raise NoModelYet("no model loaded yet")
            return self._model

    def wait(self, timeout: float) -> LoadedModel | None:
        """The model, waiting up to ``timeout`` seconds for a first one."""
        with self._changed:
            self._changed.wait_for(lambda: self._model is not None, timeout)
            return self._model

    def load(self, variant_dir: Path) -> str:
        """Load ``variant_dir`` and make it the active model; returns its variant id."""
        model = load_variant(variant_dir, self.threads)
        with self._changed:
            first = self._model is None
            self._model = model
            self._changed.notify_all()
        for listener in self.listeners:
            listener(model)
        meta = model.metadata
        log.info("%s model %s running", "first" if first else "swapped to", meta.variant_id)
        return meta.variant_id
