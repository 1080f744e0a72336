"""delivery: see docs/design.md."""
