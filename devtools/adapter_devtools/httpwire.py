"""HTTP/1.1 on raw asyncio sockets, for the tools that stand in for EMQX's HTTP connector (the benches' load
generator, scripts/loadgen.py; the chaos suite's pipelined load): a request built once as bytes, an answer read off
the stream by its Content-Length."""

from __future__ import annotations

import asyncio


def build_request(host: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = [f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json",
            f"Content-Length: {len(body)}", "Connection: keep-alive"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def read_answer(reader: asyncio.StreamReader) -> int:
    """One HTTP/1.1 answer off `reader` (its head, then its Content-Length body): its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line[15:]) for line in head.split(b"\r\n") if line[:15].lower() == b"content-length:"), 0)
    if length:
        await reader.readexactly(length)
    return int(head[9:12])
