"""The controller's HTTP side: Prometheus ``/metrics`` and the operator dashboard."""
