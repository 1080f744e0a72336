"""EMQX device-management adapter: one HTTP API over an EMQX fleet (see DESIGN.md)."""

__version__ = "0.1.0"
