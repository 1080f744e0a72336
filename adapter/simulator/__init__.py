"""Device simulator: N DMA agents (DESIGN §3, §7) on paho-mqtt, for development, load and tests.

`main(argv)` is the command line (`adapter simulate`, `scripts/simulate`); `Simulator(SimConfig(...))`
runs in-process on an asyncio loop.
"""

from adapter.simulator.cli import main
from adapter.simulator.runner import SimConfig, Simulator

__all__ = ["SimConfig", "Simulator", "main"]
