"""EdgeFleet: the package both the controller and the agent import.

It holds the contracts (generated code in ``edgefleet.v1``), domain types shared by both sides,
hardware profiles, MQTT topic names, enrollment token format and update verification.
"""

__version__ = "0.1.0"
