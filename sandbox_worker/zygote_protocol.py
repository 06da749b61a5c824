"""The frames between the pool (owner) and a zygote: 4-byte big-endian length + marshal payload.

Both ends are this package's own trusted processes, so marshal (JSON cost ~10x more to build and parse).
  owner -> zygote: a job (`Supervisor.run_program`'s input); during a streaming job, at most one STOP_FRAME.
  zygote -> owner: the hello, then per job: progress frames (streaming jobs only) and the report.
A progress frame's length has PROGRESS_FLAG set; its payload is [(test index, state), ...] for the tests that
finished since the last one. A report's length never has it (reports are far below 2 GiB).
"""

from __future__ import annotations

import marshal
import os
import struct
from dataclasses import dataclass
from typing import Any

PROGRESS_FLAG = 1 << 31
_STOP = marshal.dumps({"stop": True})
STOP_FRAME = struct.pack(">I", len(_STOP)) + _STOP


def _read_exact(fd: int, size: int) -> bytes:
    chunks = []
    while size:
        chunk = os.read(fd, size)
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int) -> dict[str, Any]:
    (size,) = struct.unpack(">I", _read_exact(fd, 4))
    return marshal.loads(_read_exact(fd, size))  # type: ignore[no-any-return]


def write_frame(fd: int, frame: Any, progress: bool = False) -> None:
    payload = marshal.dumps(frame)
    data = struct.pack(">I", len(payload) | (PROGRESS_FLAG if progress else 0)) + payload
    while data:
        data = data[os.write(fd, data):]


@dataclass(frozen=True)
class Stream:
    """A streaming job's channel to its owner (the zygote's protocol pipes): finished tests go out as progress
    frames, and a stop frame may come in."""

    stop_fd: int
    out_fd: int

    def send_progress(self, finished: list[tuple[int, dict[str, Any]]]) -> None:
        write_frame(self.out_fd, finished, progress=True)

    def take_stop(self) -> None:
        """Reads the stop frame that made `stop_fd` readable (or the owner's hang-up: a stop all the same)."""
        try:
            read_frame(self.stop_fd)
        except (EOFError, OSError, ValueError):
            pass
