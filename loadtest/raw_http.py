"""A minimal HTTP/1.1 load client: pre-encoded POSTs over keep-alive connections, one request at a time each.

For benchmarks that send thousands of small requests on the machine whose cores the service is measured on:
a general client costs about as much CPU per request as the service's answer to a cached item (aiohttp ~0.5
ms, httpx more), so it would measure the client. This one writes bytes built before the clock starts and reads
a status line, headers and a Content-Length body (what uvicorn sends for these routes), nothing else.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import NamedTuple
from urllib.parse import urlsplit


class Answers(NamedTuple):
    wall_s: float
    client_cpu_s: float  # this process's CPU meanwhile: the load generator's share of the machine
    answers: list[tuple[int, bytes]]  # (status, body) per request, in the order of the bodies


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise ValueError(f"an answer without Content-Length: {head[:200]!r}")


async def post_many(url: str, path: str, bodies: Sequence[bytes], concurrency: int, timeout_s: float) -> Answers:
    """POSTs every body (JSON) to `path`, at most `concurrency` in flight on as many connections."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = [b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (path.encode(), host.encode(), len(body), body) for body in bodies]
    answers: list[tuple[int, bytes]] = [(0, b"")] * len(bodies)
    todo = iter(range(len(bodies)))  # shared: each request goes to exactly one connection
    connections = [await asyncio.open_connection(host, port) for _ in range(max(1, min(concurrency, len(bodies))))]

    async def drive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for i in todo:
            writer.write(requests[i])
            head = await reader.readuntil(b"\r\n\r\n")
            answers[i] = (int(head[9:12]), await reader.readexactly(_content_length(head)))

    start, cpu = time.perf_counter(), time.process_time()
    try:
        async with asyncio.timeout(timeout_s):
            await asyncio.gather(*(drive(r, w) for r, w in connections))
        return Answers(time.perf_counter() - start, time.process_time() - cpu, answers)
    finally:
        for _, writer in connections:
            writer.close()
