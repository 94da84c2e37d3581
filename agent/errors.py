"""Agent errors, rooted in the shared hierarchy."""

from edgefleet.errors import EdgeFleetError, Unavailable


class AgentError(EdgeFleetError):
    """Root of errors raised by the agent."""


class NotEnrolled(AgentError):
    """The data directory holds no identity yet: run `edgefleet-agent enroll` first."""


class ControllerUnreachable(AgentError, Unavailable):
    """The controller did not answer within the retry budget (transient: try again later)."""


class DataDirError(AgentError):
    """The agent's data directory cannot be created or written."""
