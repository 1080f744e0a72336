"""targets: see docs/design.md."""
