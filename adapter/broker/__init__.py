"""broker: see docs/design.md."""
