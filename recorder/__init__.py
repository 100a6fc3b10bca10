"""Devices, the fixed-rate record/rollout loop and the episode store. No Qt, no torch at import time."""
