"""Redis: every key, every client, every Lua script and the one way to call it, the batcher."""
