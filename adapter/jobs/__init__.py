"""jobs: see docs/design.md."""
