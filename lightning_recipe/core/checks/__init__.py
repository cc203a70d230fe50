"""The recipe steps' verdicts: configuration, mergeable state and verdict functions returning findings; no Lightning."""
