"""Thin HTTP handlers, one module per area, each exporting `ENDPOINTS`."""
