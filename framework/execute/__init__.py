"""Applies a Plan through backends: observed state, diff, step-by-step apply with recorded outputs."""
