"""Crash-safe A/B model updates: a slot store on disk, a pure update machine, a thin updater."""
