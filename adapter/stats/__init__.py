"""Per-minute series of the fleet and of each delivery target, bounded rings in Redis, for the console's charts."""
