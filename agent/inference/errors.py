"""Errors of the inference side, rooted in the agent's hierarchy."""

from agent.errors import AgentError


class NoModelYet(AgentError, LookupError):
    """The agent has no model to run yet (it waits for its first over-the-air update)."""
