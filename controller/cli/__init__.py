"""The operator's `edgefleet` command."""
