"""The chaos suite: bounded load through the ingest, faults injected one after another, and what a recording
receiver got, counted per fault (docs/reliability.md; the command is scripts/chaos.py)."""
