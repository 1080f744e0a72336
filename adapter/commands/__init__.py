"""Remote commands: the state machine (rules.py, commands.lua), their store, bulk creation and the runner."""
