"""Responses leave the gateway in one socket write (service/http_protocol.py), complete and in order."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import sys
from urllib.parse import urlsplit

import pytest

from acecoder_reward.service.http_protocol import FLUSH_BYTES, _OneWritePerStep
from loadtest.gateway_process import Gateway


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = self.aborted = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def held_transport() -> tuple[RecordingTransport, _OneWritePerStep]:
    real = RecordingTransport()
    return real, _OneWritePerStep(real, asyncio.get_running_loop())  # type: ignore[arg-type]


def test_writes_of_one_step_go_out_as_one_write_in_order() -> None:
    async def scenario() -> None:
        real, held = held_transport()
        held.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        held.write(b"")
        held.write(memoryview(b"{}"))
        assert real.writes == [] and held.get_write_buffer_size() == 40
        await asyncio.sleep(0)
        assert real.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
        held.writelines([b"a", b"b"])  # a later step: its own write
        await asyncio.sleep(0)
        assert real.writes[1:] == [b"ab"]
        assert held.get_extra_info("peername") == "info:peername"  # the rest is the real transport's

    asyncio.run(scenario())


def test_what_is_held_is_bounded_and_goes_to_the_socket_past_the_bound() -> None:
    async def scenario() -> None:
        real, held = held_transport()
        chunk = b"x" * (FLUSH_BYTES // 4)
        for _ in range(5):  # a streamed answer written without a pause: the transport sees it as it grows
            held.write(chunk)
        assert real.writes == [chunk * 4] and held.get_write_buffer_size() == len(chunk)
        await asyncio.sleep(0)
        assert real.writes == [chunk * 4, chunk]

    asyncio.run(scenario())


def test_close_sends_what_is_held_first_and_abort_drops_it() -> None:
    async def scenario() -> None:
        real, held = held_transport()
        held.write(b"last answer")
        held.close()
        assert real.writes == [b"last answer"] and real.closed
        await asyncio.sleep(0)  # the scheduled flush finds nothing left
        assert real.writes == [b"last answer"]

        real, held = held_transport()
        held.write(b"never sent")
        held.abort()
        await asyncio.sleep(0)
        assert real.writes == [] and real.aborted

    asyncio.run(scenario())


def _request(path: str, host: str, close: bool) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n").encode()


def data_segments_in(sock: socket.socket) -> int:
    """Linux's tcp_info.tcpi_data_segs_in (offset 152): segments with data this socket received. On loopback
    each write of the peer's is one segment."""
    return int(struct.unpack_from("I", sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256), 152)[0])


@pytest.mark.skipif(sys.platform != "linux", reason="reads Linux's tcp_info")
def test_the_served_gateway_answers_in_one_segment_and_before_closing(gateway: Gateway) -> None:
    parts = urlsplit(gateway.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    with socket.create_connection((host, port), timeout=10) as sock:
        for _ in range(3):  # keep-alive: each answer one segment (two with uvicorn's own protocol)
            before = data_segments_in(sock)
            sock.sendall(_request("/health", host, close=False))
            data = sock.recv(65536)
            while b"\r\n\r\n" not in data or not data.endswith(b"}"):
                data += sock.recv(65536)
            assert data_segments_in(sock) - before == 1, data
            head, _, body = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), data
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            assert len(body) == length, data
            assert json.loads(body)["status"] == "ok"
    with socket.create_connection((host, port), timeout=10) as sock:  # Connection: close: all of it, then EOF
        sock.sendall(_request("/health", host, close=True))
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and json.loads(body)["status"] == "ok"


def test_a_client_that_half_closes_after_its_request_still_gets_the_answer(gateway: Gateway) -> None:
    """`nc -N`-style probes send, then shut their side: the answer written in that step must still go out
    (the event loop closes the socket right after the end of the stream is read)."""
    parts = urlsplit(gateway.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    for _ in range(5):
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(_request("/health", host, close=False))
            sock.shutdown(socket.SHUT_WR)
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
            head, _, body = received.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200") and json.loads(body)["status"] == "ok", received
