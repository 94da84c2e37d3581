"""Agent errors, rooted in the shared hierarchy."""

from edgefleet.errors import EdgeFleetError


class AgentError(EdgeFleetError):
    """Root of errors raised by the agent."""


class NotEnrolled(AgentError):
    """The data directory holds no identity yet: run `edgefleet-agent enroll` first."""


class ControllerUnreachable(AgentError):
    """The controller did not answer within the retry budget."""


class DataDirError(AgentError):
    """The agent's data directory cannot be created or written."""
