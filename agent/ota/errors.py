"""OTA errors, rooted in the agent hierarchy."""

from agent.errors import AgentError


class OtaError(AgentError):
    """Root of errors raised while updating the model on the device."""


class InstallFailed(OtaError):
    """Writing a variant into the spare slot failed; the active slot is untouched."""


class DiskFull(InstallFailed):
    """The disk ran out of space (ENOSPC/EDQUOT) during a write."""


class SlotCorrupted(OtaError):
    """A slot's files do not match the hashes recorded when it was installed."""


class SmokeTestFailed(OtaError):
    """A freshly installed variant did not load or did not produce sane outputs."""


class ArtifactUrlFailed(OtaError):
    """A presigned artifact URL gave no verified bytes (expired, refused, unreachable, wrong
    length or hash): the download falls back to the controller's stream."""
