"""The dev tools (development and tests only; not in the service's wheel or image).

- `devbroker`  the dev broker (`adapter devbroker …`, `python -m adapter_devtools.devbroker …`)
- `simulator`  simulated DMA devices (`adapter simulate …`, `scripts/simulate`)
- `dev`        `adapter dev`: Redis, the dev broker, the API and a worker in one process tree

The service's command line (`adapter.cli`) imports these lazily; nothing else in `adapter` imports them.
"""
