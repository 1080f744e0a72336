"""http: see docs/design.md."""
