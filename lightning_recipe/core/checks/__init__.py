"""Each recipe step's verdicts on plain numbers (no Lightning): configuration, state, findings."""
