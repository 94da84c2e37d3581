"""Errors of the local runtime, rooted in the agent's hierarchy."""

from agent.errors import AgentError


class RuntimeFailure(AgentError):
    """A model could not be loaded or run."""


class BadFrame(AgentError):
    """A frame is malformed (wrong shape, dtype or undecodable); the run loop skips it."""


class FrameSourceError(AgentError):
    """A frame source cannot be opened (missing path, unsupported kind, missing extra)."""
