"""Streaming inference: consumers that score an event bus's events with the served model."""
