"""Remote commands: the state machine (rules.py, lifecycle.lua), their store, bulk creation and the runner."""
