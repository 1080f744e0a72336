"""Device simulator: N DMA agents (docs/design.md §3, §7) on paho-mqtt, for development, load and tests.

`main(argv)` is the command line (`adapter simulate`, `scripts/simulate`); `Simulator(SimConfig(...))`
runs in-process on an asyncio loop.
"""

from adapter_devtools.simulator.cli import main
from adapter_devtools.simulator.runner import SimConfig, Simulator

__all__ = ["SimConfig", "Simulator", "main"]
