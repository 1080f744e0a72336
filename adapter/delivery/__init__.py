"""The delivery engine: callbacks and routes delivered from the streams, retried, held, dead-lettered."""
