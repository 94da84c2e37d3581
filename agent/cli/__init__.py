"""The `edgefleet-agent` command."""
