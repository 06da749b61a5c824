"""Watching one run from outside: its result frames, its output, its deadlines and its caps.

The watcher reads the run's result pipe and output pipe and waits on its pidfd, on one epoll instance,
with the nearest deadline (the current test's, or the program's) as timeout. It never blocks on the run:
every way a run can end comes back as a `RunEnd`.
"""

from __future__ import annotations

import json
import os
import re
import select
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from acecoder_reward.sandbox_worker import plain_data
from acecoder_reward.sandbox_worker.zygote_protocol import Stream

READ_CHUNK = 1 << 16
PUMP_CHUNKS = 64  # one read of a pipe moves at most 4 MiB before the loop looks at the deadlines again
OUTPUT_HEAD_BYTES = 2048
QUIET_S = 0.01  # how often a quiet run's pipes are read
BUSY_BYTES = 1 << 14  # a read that finds this much marks the pipe busy
QUIET_MASK = 0  # epoll reports EPOLLHUP and EPOLLERR whatever the mask
_decode_json = json.JSONDecoder().decode  # one value, no trailing data; without json.loads' per-call checks
# Most frames are exactly one of these compact forms (runner.LOADED, DONE, START, END): they are read without
# a JSON parse, into what the parse would give. Any other spelling takes the JSON path.
_FIXED_EVENTS = {b'{"ev":"loaded"}': "loaded", b'{"ev":"done"}': "done"}
_INDEXED_EVENT = re.compile(rb'\{"ev":"(start|end)","i":(0|[1-9][0-9]{0,8})\}')


@dataclass
class TestState:
    state: str = "not_run"  # done | timeout | error | not_run
    # per hole: [True, encoded value] or [False, error message, builtin exception classes]
    holes: list[Any] = field(default_factory=list)
    error: str | None = None


@dataclass
class RunEnd:
    """How one child ended: `reason` is done | load_error | test_timeout | program_timeout |
    output_exceeded | result_exceeded | protocol_error | exited | signaled | stopped (by the owner)."""

    reason: str
    detail: str = ""
    current: int | None = None  # the test in progress when it ended
    last_started: int = -1


class Watcher:
    """Reads one child's frames and output until it ends; applies the deadlines and caps.

    The zygote is not woken for every frame: a HumanEval program flushes one frame per test and finishes in
    a few ms, and a wake-up per frame cost more CPU than the frame. The pipes are registered for hang-up
    only (the runner closes its result pipe right after `done`, and epoll always reports hang-ups) and are
    read on a tick of `QUIET_S`, before any deadline is judged, and when the child exits. A pipe that a
    tick finds busy is watched for every write until it quiets down, so large output still streams. The
    price: a test's deadline starts when its `start` frame is read, up to `QUIET_S` after it was written.

    With a `stream`, the tests that finished since the last read go to the owner as one progress frame, unless
    the run ended in the same read (its report follows at once), and the owner's stop ends the run.
    """

    def __init__(self, result_r: int, output_r: int, pidfd: int, tests: list[TestState],
                 limits: dict[str, Any], epoll: select.epoll, result_budget: int,
                 stream: Stream | None = None) -> None:
        self.result_r, self.output_r, self.pidfd = result_r, output_r, pidfd
        self.epoll = epoll
        self.tests = tests
        self.limits = limits
        self.buffer = bytearray()
        self.result_bytes = 0
        self.result_budget = result_budget  # what is left of the program's max_result_bytes
        self.output_bytes = 0
        self.output_head = b""
        self.current: int | None = None
        self.last_started = -1
        self.test_deadline: float | None = None
        self.code: str | None = None
        self._open: dict[int, int] = {}  # pipe fd -> its epoll mask; a pipe at EOF is dropped
        self._framed_bytes = 0  # result bytes taken as whole frames
        self.stream = stream
        self._unsent: list[int] = []  # tests finished since the last progress frame

    def _end(self, reason: str, detail: str) -> RunEnd:
        return RunEnd(reason, detail, self.current, self.last_started)

    def watch(self, program_deadline: float) -> RunEnd:
        self.epoll.register(self.pidfd, select.EPOLLIN)
        watched = [self.pidfd]
        try:
            if self.stream is not None:
                self.epoll.register(self.stream.stop_fd, select.EPOLLIN)
                watched.append(self.stream.stop_fd)
            for fd in (self.result_r, self.output_r):
                os.set_blocking(fd, False)
                self.epoll.register(fd, QUIET_MASK)
                self._open[fd] = QUIET_MASK
            return self._loop(program_deadline)
        finally:
            for fd in (*watched, *self._open):
                self.epoll.unregister(fd)
            self._open.clear()

    def _loop(self, program_deadline: float) -> RunEnd:
        next_tick = time.monotonic() + QUIET_S
        while True:
            deadline = min(program_deadline, self.test_deadline or program_deadline)
            now = time.monotonic()
            if now >= deadline or now >= next_tick:
                # Frames the run wrote since the last read count before any deadline is judged.
                ended = self._pump_all()
                if ended:
                    return ended
                if self._unsent:
                    self._send_progress()
                now = time.monotonic()
                deadline = min(program_deadline, self.test_deadline or program_deadline)
                if now >= deadline:
                    return self._deadline_end(program_deadline)
                next_tick = now + QUIET_S
            for fd, _ in self.epoll.poll(min(deadline, next_tick) - now):
                if fd == self.pidfd:
                    return self._exit_end()
                if fd in self._open:
                    ended = self._pump(fd)
                    if ended:
                        return ended
                elif self.stream is not None and fd == self.stream.stop_fd:
                    self.stream.take_stop()
                    return self._end("stopped", "stopped: an earlier test failed (stop_on_first_failure)")
            if self._unsent:
                self._send_progress()

    def _send_progress(self) -> None:
        assert self.stream is not None
        self.stream.send_progress([(i, self.tests[i].__dict__) for i in self._unsent])
        self._unsent.clear()

    def _deadline_end(self, program_deadline: float) -> RunEnd:
        if time.monotonic() >= program_deadline:
            return self._end("program_timeout", f"program exceeded {self.limits['program_timeout_s']} s")
        return self._end("test_timeout", f"test exceeded {self.limits['test_timeout_s']} s")

    def _pump_all(self) -> RunEnd | None:
        for fd in (self.result_r, self.output_r):
            if fd in self._open:
                ended = self._pump(fd)
                if ended:
                    return ended
        return None

    def _exit_end(self) -> RunEnd:
        """The child exited: take what it left in the pipes (the caller refines how it ended)."""
        for fd in (self.result_r, self.output_r):
            for _ in range(16):  # its namespace is being torn down; stragglers stop writing soon
                if fd not in self._open:
                    break
                ended = self._pump(fd)
                if ended is not None:
                    return ended
        return self._end("exited", "the program exited before finishing its tests")

    def _pump(self, fd: int) -> RunEnd | None:
        """Reads what the pipe holds now (at most a pipe's worth per chunk, a bounded number of chunks)."""
        got = 0
        for _ in range(PUMP_CHUNKS):
            try:
                data = os.read(fd, READ_CHUNK)
            except BlockingIOError:
                break
            if not data:
                self.epoll.unregister(fd)
                del self._open[fd]
                return None
            got += len(data)
            if fd == self.result_r:
                ended = self._on_result(data)
                if ended:
                    return self._finish(ended)
            elif self._on_output(data):
                return self._output_exceeded()
        # A busy pipe wakes us for each write until a read finds it quiet again: its writer never waits
        # a whole tick on a full pipe. A quiet one only wakes us when its writer hangs up.
        mask = select.EPOLLIN if got >= BUSY_BYTES else QUIET_MASK
        if self._open.get(fd, mask) != mask:
            self.epoll.modify(fd, mask)
            self._open[fd] = mask
        return None

    def _finish(self, ended: RunEnd) -> RunEnd:
        """A frame ended the run: the output written before it still counts (it may not have been read)."""
        while self.output_r in self._open:
            try:
                data = os.read(self.output_r, READ_CHUNK)
            except BlockingIOError:
                break
            if not data:
                break
            if self._on_output(data):
                return self._end("output_exceeded", f"output exceeded {self.limits['max_output_bytes']} bytes")
        return ended

    def _output_exceeded(self) -> RunEnd:
        """The output went over its cap. The result pipe (read on a tick) may still hold frames written
        before that, such as the previous test's end: they are read first, so the test that was running
        is the one blamed."""
        for _ in range(PUMP_CHUNKS):
            if self.result_r not in self._open:
                break
            try:
                data = os.read(self.result_r, READ_CHUNK)
            except BlockingIOError:
                break
            if not data or self._on_result(data) is not None:
                break
        return self._end("output_exceeded", f"output exceeded {self.limits['max_output_bytes']} bytes")

    def _on_output(self, data: bytes) -> bool:
        """Counts output; True once it is over the cap."""
        self.output_bytes += len(data)
        if len(self.output_head) < OUTPUT_HEAD_BYTES:
            self.output_head += data[: OUTPUT_HEAD_BYTES - len(self.output_head)]
        return self.output_bytes > self.limits["max_output_bytes"]

    def _on_result(self, data: bytes) -> RunEnd | None:
        """Frames in arrival order; over the result cap, the frames that fit in it still count first."""
        self.result_bytes += len(data)
        self.buffer += data
        payloads = []
        over = self.result_bytes > self.result_budget
        while len(self.buffer) >= 4:
            (size,) = struct.unpack(">I", self.buffer[:4])
            if self._framed_bytes + 4 + size > self.result_budget:
                over = True  # announced, or already there: it cannot fit
                break
            if len(self.buffer) < 4 + size:
                break
            payloads.append(bytes(self.buffer[4: 4 + size]))
            del self.buffer[: 4 + size]
            self._framed_bytes += 4 + size
        ended = self._on_payloads(payloads) if payloads else None
        if ended is None and over:
            return self._end("result_exceeded", f"results exceeded {self.limits['max_result_bytes']} bytes")
        return ended

    def _on_payloads(self, payloads: list[bytes]) -> RunEnd | None:
        """Each payload must be exactly one JSON value (UTF-8). Whatever a frame holds, a bad one is this
        run's protocol error, never the zygote's crash."""
        try:
            for payload in payloads:
                ended = self._on_frame(_read_frame(payload))
                if ended:
                    return ended
        except Exception:  # frames are hostile input: any failure to read one is the run's
            return self._end("protocol_error", "malformed result frame")
        return None

    def _on_frame(self, frame: dict[str, Any]) -> RunEnd | None:
        ev = frame["ev"]
        if ev == "load_error":
            return RunEnd("load_error", str(frame["error"])[:500], None, self.last_started)
        if ev == "code":
            if self.code is None and isinstance(frame["code"], str):  # the first one, sent before exec
                self.code = frame["code"]
            return None
        if ev == "no_code":
            return RunEnd("no_code", "no code found in the response", None, self.last_started)
        if ev == "start":
            index = _index(frame["i"], self.tests)
            self.current, self.last_started = index, max(self.last_started, index)
            self.test_deadline = time.monotonic() + self.limits["test_timeout_s"]
        elif ev == "hole":
            self._on_hole(frame)
        elif ev == "end":
            index = _index(frame["i"], self.tests)
            test = self.tests[index]
            if test.state == "not_run":
                test.state = "done"
                if self.stream is not None:
                    self._unsent.append(index)
            self.current, self.test_deadline = None, None
        elif ev == "done":
            return RunEnd("done")
        elif ev != "loaded":
            raise ValueError(ev)
        return None

    def _on_hole(self, frame: dict[str, Any]) -> None:
        test = self.tests[_index(frame["i"], self.tests)]
        j = frame["j"]
        if type(j) is not int or j != len(test.holes) or test.state != "not_run":
            raise ValueError("hole out of order")
        if "err" in frame:
            classes = frame.get("x")
            if type(classes) is not list or len(classes) > 32 or any(type(c) is not str for c in classes):
                classes = []
            test.holes.append([False, str(frame["err"])[:500], [c[:64] for c in classes]])
        else:
            plain_data.validate(frame["v"])  # depth and size, so no later parser chokes on it
            test.holes.append([True, frame["v"]])


def _read_frame(payload: bytes) -> Any:
    event = _FIXED_EVENTS.get(payload)
    if event is not None:
        return {"ev": event}
    indexed = _INDEXED_EVENT.fullmatch(payload)
    if indexed is not None:
        return {"ev": "start" if indexed[1] == b"start" else "end", "i": int(indexed[2])}
    return _decode_json(payload.decode("utf-8"))


def _index(value: Any, tests: list[TestState]) -> int:
    if type(value) is not int or not 0 <= value < len(tests):
        raise ValueError("bad test index")
    return value
