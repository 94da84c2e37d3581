"""Build-time: the cloud model's accuracy as a function of the edge model's confidence.

For each built edge variant, on the build's validation set: the variant's calibrated
confidence (its own temperature, the agent's metric ``max_softmax``) and answer per frame,
the cloud model's answer per frame, and the true class, binned on CONFIDENCE_BOUNDS
(controller.monitoring.estimate.CloudTable). Stored in the variant's metrics under
``cloud_by_confidence``; the accuracy estimate reads it by variant id.

The cloud model is the one registered for the edge model (``model add --cloud-for``) when
the build runs; a build without one records no table (``model variants`` says so), and the
estimate then treats the cloud's accuracy on hard frames as unknown (a wide interval) until
the version is rebuilt with a cloud model registered, or operator labels arrive.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from controller.monitoring.estimate import CLOUD_TABLE_KEY, CloudTable, table_from_predictions
from controller.optimize.evaluate import as_logits, in_layout, validation_inputs_for
from controller.optimize.pipeline import BUILT, VariantResult
from controller.optimize.runners import open_runner
from controller.optimize.source import SourceModel
from controller.services.model_views import CloudModelInfo
from edgefleet.confidence import calibrated_probabilities

log = logging.getLogger(__name__)

METRICS_KEY = CLOUD_TABLE_KEY
BATCH = 256


def cloud_answers(cloud: CloudModelInfo, frames: np.ndarray) -> np.ndarray:
    """The cloud model's top-1 on raw validation frames, preprocessed as it is served."""
    from controller.serving.cloud_model import CloudModel

    model = CloudModel(cloud.onnx_path, cloud.preprocessing, f"{cloud.name}:{cloud.version}")
    out: list[np.ndarray] = []
    for i in range(0, len(frames), BATCH):
        batch = [model.preprocess(f) for f in frames[i : i + BATCH]]
        out.append(np.array([p.label for p in model.run_batch(batch)], np.int64))
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def measure_tables(
    source: SourceModel, results: Iterable[VariantResult], cloud: CloudModelInfo
) -> dict[str, CloudTable]:
    """variant name -> its table, for every built variant (a variant that fails to run is
    logged and gets none)."""
    cloud_labels = cloud_answers(cloud, source.validation_x).tolist()
    truth = source.validation_y.tolist()
    tables: dict[str, CloudTable] = {}
    for r in results:
        if r.status != BUILT or r.metadata is None:
            continue
        meta = r.metadata
        x = validation_inputs_for(source, meta)  # a reduced-resolution variant: its own size
        try:
            runner = open_runner(Path(r.directory) / meta.file, meta.runtime, 1)
            logits = as_logits(
                runner.run(in_layout(x, source.signature.layout, meta.preprocessing.layout))
            )
        except Exception:
            log.exception("cloud table: variant %s did not run on validation", r.variant)
            continue
        probs = [calibrated_probabilities(row, meta.temperature) for row in logits]
        tables[r.variant] = table_from_predictions(
            f"{cloud.name}:{cloud.version}",
            [float(p.max()) for p in probs],
            [int(p.argmax()) for p in probs],
            cloud_labels,
            truth,
        )
    return tables
