"""Lambda entry points; each is thin and imports the engine in `offload`."""
