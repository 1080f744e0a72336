"""auth: see docs/design.md."""
