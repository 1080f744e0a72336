"""Seams the tests share: a real uvicorn server in a thread, Redis databases, polling with a deadline."""
