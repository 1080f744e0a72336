"""EMQX device-management adapter: one HTTP API over an EMQX fleet (see docs/design.md)."""

__version__ = "0.1.0"
