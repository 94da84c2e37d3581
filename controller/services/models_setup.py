"""Wire the model registry into a controller: artifact store, TUF repository, and the three
model services (catalogue, build runner, device benchmarks)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from controller.artifacts import ArtifactStore, store_from_url
from controller.config import ControllerConfig, check_url_lifetime
from controller.optimize.tflite_variants import Onnx2TfConfig
from controller.services.artifact_traffic import ArtifactTraffic
from controller.services.model_bench import DeviceBenchmarks
from controller.services.model_build import BuildRunner
from controller.services.models import ModelCatalogue
from controller.services.releases import Releases, TufPaths
from controller.store.db import TUF_LOCK_KEY, Database
from edgefleet.profiles import ProfileCatalogue

log = logging.getLogger(__name__)


@dataclass
class ModelComponents:
    store: ArtifactStore
    releases: Releases
    models: ModelCatalogue  # read side: versions, variants, selections (rollouts, serving)
    builds: BuildRunner  # operator builds
    benchmarks: DeviceBenchmarks  # device reports
    artifact_url_lifetime_s: int = 0  # presigned artifact URLs for devices; 0 = none
    artifact_traffic: ArtifactTraffic = field(default_factory=ArtifactTraffic)


def open_store(config: ControllerConfig) -> ArtifactStore:
    """The configured store; an S3 store must answer now, so a controller with an unreachable
    endpoint or a missing bucket fails at start instead of reporting ready."""
    url = config.store or str(config.data_dir / "artifacts")
    store = store_from_url(
        url,
        endpoint_url=config.store_endpoint_url or None,
        presign_endpoint_url=config.artifact_url_endpoint or None,
    )
    if url.startswith("s3://"):
        from controller.artifacts.s3 import S3ArtifactStore

        assert isinstance(store, S3ArtifactStore)
        store.check_reachable()
    return store


def start_models(
    config: ControllerConfig, db: Database, profiles: ProfileCatalogue
) -> ModelComponents:
    lifetime = config.artifact_url_lifetime_s
    check_url_lifetime(lifetime)  # a typed config may not have come through load_config
    store = open_store(config)
    # replicas sharing <data_dir>/tuf change it one at a time (no-op on SQLite)
    releases = Releases(
        TufPaths.of(config.data_dir), exclusive=lambda: db.advisory_lock(TUF_LOCK_KEY)
    )
    workdir = config.data_dir / "work"
    catalogue = ModelCatalogue(db, store, workdir)
    onnx2tf = Onnx2TfConfig(python=config.onnx2tf_python or None)
    builds = BuildRunner(catalogue, releases, profiles, workdir, onnx2tf=onnx2tf)
    benchmarks = DeviceBenchmarks(catalogue, profiles)
    return ModelComponents(store, releases, catalogue, builds, benchmarks, lifetime)


def refresh_timestamps(
    releases: Releases, stopped: threading.Event, leads: Callable[[], bool] = lambda: True
) -> None:
    """Background loop: keep the signed timestamp (and snapshot/targets) from expiring; only
    while ``leads()`` (one replica re-signs)."""
    while True:
        try:
            if leads() and releases.refresh_if_due():
                log.info("re-signed TUF timestamp")
        except Exception:  # must outlive a disk hiccup; the next round retries
            log.exception("refreshing the TUF timestamp failed")
        if stopped.wait(releases.refresh_interval_s()):
            return
