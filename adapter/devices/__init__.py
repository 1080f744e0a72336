"""devices: see docs/design.md."""
