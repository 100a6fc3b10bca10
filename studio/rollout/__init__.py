"""The Rollout feature: its tab, the rollout/evaluation threads, the review, overlays, policy and calibration loading."""
