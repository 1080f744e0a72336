"""Rollouts: one command to the devices a selector matches, at a rate with ramp-up, paused, resumed, aborted."""
