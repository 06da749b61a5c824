"""Watching one run from outside: its result frames, its output, its deadlines and its caps.

The watcher reads the run's result pipe and output pipe and waits on its pidfd, on one epoll instance,
with the nearest deadline (the current test's, or the program's) as timeout. It never blocks on the run:
every way a run can end comes back as a `RunEnd`.
"""

from __future__ import annotations

import json
import os
import selectors
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from sandbox_worker import plain_data

READ_CHUNK = 1 << 16
OUTPUT_HEAD_BYTES = 2048


@dataclass
class TestState:
    state: str = "not_run"  # done | timeout | error | not_run
    holes: list[Any] = field(default_factory=list)  # [ok, encoded value or error message] per hole
    error: str | None = None


@dataclass
class RunEnd:
    """How one child ended: `reason` is done | load_error | test_timeout | program_timeout |
    output_exceeded | result_exceeded | protocol_error | exited | signaled."""

    reason: str
    detail: str = ""
    current: int | None = None  # the test in progress when it ended
    last_started: int = -1


class Watcher:
    """Reads one child's frames and output until it ends; applies the deadlines and caps."""

    def __init__(self, result_r: int, output_r: int, pidfd: int, tests: list[TestState],
                 limits: dict[str, Any], selector: selectors.BaseSelector, result_budget: int) -> None:
        self.result_r, self.output_r, self.pidfd = result_r, output_r, pidfd
        self.selector = selector
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

    def _end(self, reason: str, detail: str) -> RunEnd:
        return RunEnd(reason, detail, self.current, self.last_started)

    def watch(self, program_deadline: float) -> RunEnd:
        sel = self.selector
        for fd in (self.result_r, self.output_r, self.pidfd):
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        try:
            return self._loop(sel, program_deadline)
        finally:
            for key in list(sel.get_map().values()):
                sel.unregister(key.fileobj)

    def _loop(self, sel: selectors.BaseSelector, program_deadline: float) -> RunEnd:
        while True:
            deadline = min(program_deadline, self.test_deadline or program_deadline)
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                return self._deadline_end(program_deadline)
            for key, _ in sel.select(timeout):
                if key.fd == self.pidfd:
                    return self._exit_end(sel)
                ended = self._pump(key.fd, sel)
                if ended:
                    return ended

    def _deadline_end(self, program_deadline: float) -> RunEnd:
        if time.monotonic() >= program_deadline:
            return self._end("program_timeout", f"program exceeded {self.limits['program_timeout_s']} s")
        return self._end("test_timeout", f"test exceeded {self.limits['test_timeout_s']} s")

    def _exit_end(self, sel: selectors.BaseSelector) -> RunEnd:
        """The child exited: take what it left in the pipes (the caller refines how it ended)."""
        for fd in (self.result_r, self.output_r):
            for _ in range(1024):  # its namespace is being torn down; stragglers stop writing soon
                if fd not in sel.get_map():
                    break
                try:
                    data = os.read(fd, READ_CHUNK)
                except BlockingIOError:
                    break
                if not data:
                    break
                ended = self._on_output(data) if fd == self.output_r else self._on_result(data)
                if ended is not None:
                    return ended
        return self._end("exited", "the program exited before finishing its tests")

    def _pump(self, fd: int, sel: selectors.BaseSelector) -> RunEnd | None:
        try:
            data = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return None
        if not data:
            sel.unregister(fd)
            return None
        if fd == self.output_r:
            return self._on_output(data)
        return self._on_result(data)

    def _on_output(self, data: bytes) -> RunEnd | None:
        self.output_bytes += len(data)
        if len(self.output_head) < OUTPUT_HEAD_BYTES:
            self.output_head += data[: OUTPUT_HEAD_BYTES - len(self.output_head)]
        if self.output_bytes > self.limits["max_output_bytes"]:
            return self._end("output_exceeded", f"output exceeded {self.limits['max_output_bytes']} bytes")
        return None

    def _on_result(self, data: bytes) -> RunEnd | None:
        self.result_bytes += len(data)
        if self.result_bytes > self.result_budget:
            return self._end("result_exceeded", f"results exceeded {self.limits['max_result_bytes']} bytes")
        self.buffer += data
        while len(self.buffer) >= 4:
            (size,) = struct.unpack(">I", self.buffer[:4])
            if size > self.result_budget:
                return self._end("result_exceeded", f"results exceeded {self.limits['max_result_bytes']} bytes")
            if len(self.buffer) < 4 + size:
                return None
            payload = bytes(self.buffer[4: 4 + size])
            del self.buffer[: 4 + size]
            try:
                ended = self._on_frame(json.loads(payload))
            except (ValueError, KeyError, TypeError, IndexError, RecursionError, plain_data.EncodeError):
                return self._end("protocol_error", "malformed result frame")
            if ended:
                return ended
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
            self.current, self.test_deadline = None, None
        elif ev == "done":
            return RunEnd("done")
        elif ev != "loaded":
            raise ValueError(ev)
        return None

    def _on_hole(self, frame: dict[str, Any]) -> None:
        test = self.tests[_index(frame["i"], self.tests)]
        j = int(frame["j"])
        if j != len(test.holes) or test.state != "not_run":
            raise ValueError("hole out of order")
        if "err" in frame:
            test.holes.append([False, str(frame["err"])[:500]])
        else:
            plain_data.validate(frame["v"])  # depth and size, so no later parser chokes on it
            test.holes.append([True, frame["v"]])


def _index(value: Any, tests: list[TestState]) -> int:
    if type(value) is not int or not 0 <= value < len(tests):
        raise ValueError("bad test index")
    return value
