"""Sweep definitions: files with get_sweep(arg) -> experiments.sweep.Sweep."""
