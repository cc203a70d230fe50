"""Figures of the recipe steps: numpy in, matplotlib ``Figure`` out; no Lightning (``style`` is the shared look)."""
