"""Errors of the fleet simulator."""

from controller.errors import ControllerError


class SimulationError(ControllerError):
    """A simulated device could not enroll, connect or follow its desired state."""
