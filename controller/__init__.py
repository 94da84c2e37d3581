"""EdgeFleet controller: the cloud side (registry, PKI, build pipeline, rollouts, serving)."""
