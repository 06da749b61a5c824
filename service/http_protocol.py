"""Uvicorn's httptools protocol, with each response sent in one socket write instead of two.

Uvicorn writes a response's status line and headers when the app sends `http.response.start`, and its body
when the app sends `http.response.body`: two `send` calls per answer, and two wake-ups of the client reading
it. On a loopback or a virtual machine a socket write that wakes its reader is the costliest thing a small
answer does. Here the transport the protocol writes to holds what is written within one event-loop step and
hands it to the socket as one write in the loop's next iteration: a response sent in one step (every JSON
answer is) leaves in one segment and nothing is reordered. What is held is bounded (past FLUSH_BYTES it goes
at once, so a large streamed answer still meets the transport's flow control), and it goes out before a
close and when the client half-closes its side.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

FLUSH_BYTES = 1 << 16  # held past this, writes go to the socket at once


class _OneWritePerStep:
    """A transport that writes what it was given during one loop step in one call at the end of the step.
    Everything but writing goes to the real transport; closing and aborting first settle what is held."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._held_bytes = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._held:
            self._loop.call_soon(self._flush)
        self._held.append(bytes(data))
        self._held_bytes += len(data)
        if self._held_bytes >= FLUSH_BYTES:
            self._flush()

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def _flush(self) -> None:
        held, self._held, self._held_bytes = self._held, [], 0
        if held and not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._held_bytes

    def close(self) -> None:
        self._flush()  # a response written just before a close must still go out, ahead of the FIN
        self._transport.close()

    def abort(self) -> None:
        self._held, self._held_bytes = [], 0
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, pause/resume_reading, ...
        return getattr(self._transport, name)


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """Pass as uvicorn's `http=`: the stock httptools protocol over a `_OneWritePerStep` transport."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._held_transport = _OneWritePerStep(transport, self.loop)
        super().connection_made(self._held_transport)  # type: ignore[arg-type]  # duck-typed: it writes, closes

    def eof_received(self) -> None:
        # The client closed its side: the event loop closes the socket when this returns, so an answer written
        # in this step must go now (uvicorn's own protocol wrote it already).
        self._held_transport._flush()
        super().eof_received()
