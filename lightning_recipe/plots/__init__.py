"""Figures of the recipe steps: numpy in, a matplotlib Figure out (no Lightning)."""
