"""Errors of the controller's MQTT brokers (embedded and supervised Mosquitto)."""

from controller.errors import ControllerError


class BrokerError(ControllerError):
    """A broker the controller runs could not start, stop or reload."""
