"""Command lines: `python -m training.train | training.evaluate | training.export`."""
