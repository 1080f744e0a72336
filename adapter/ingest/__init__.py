"""EMQX pushes to `POST /emqx/events`: parsed into events and planned into script calls."""
