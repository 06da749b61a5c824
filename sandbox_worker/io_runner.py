"""Inside the sandbox: runs a stdin/stdout test or a function-call test and reports what came out.

Like the runner, nothing here is trusted and nothing here sees an expected output: a stdin test reports
the program's stdout as text, a call test its return value as plain data; the judge compares outside.

A stdin test runs the program as a script: a fresh `__main__` module (so a `main()` guard runs), the test's
input on file descriptor 0 (a memfd: `input()`, `sys.stdin.read()`, `sys.stdin.buffer` and `open(0)` all
read it) and file descriptor 1 redirected to a memfd of its own for the test (so `print`,
`sys.stdout.buffer.write` and `os.write(1, ...)` are all captured); stderr still goes to the run's output.
A script that ends by `sys.exit(0)` or `exit()` passes on its output; any other exit status is an error.
"""

from __future__ import annotations

import builtins
import io
import os
import sys
import types
from typing import Any

# Bound at import, before the candidate runs.
_dup, _dup2, _close, _memfd, _lseek, _pread, _pwrite, _ftruncate, _fstat = (
    os.dup, os.dup2, os.close, os.memfd_create, os.lseek, os.pread, os.pwrite, os.ftruncate, os.fstat)
_ModuleType, _TextIOWrapper, _FileIO, _BufferedReader, _BufferedWriter = (
    types.ModuleType, io.TextIOWrapper, io.FileIO, io.BufferedReader, io.BufferedWriter)
_SEEK_END = os.SEEK_END
STDOUT_KEEP_BYTES = 1 << 20  # the stdout memfd is emptied at a test's start only once it holds this much
max_file_bytes = 1 << 62  # the run's file size limit (RLIMIT_FSIZE holds memfds too); the runner sets it


class ScriptExit(Exception):
    """The script ended with a non-zero exit status."""


_fds: list[int] = []  # the run's output pipe (saved from fd 1), the stdin memfd, the stdout memfd
_streams: list[Any] = [None, None]  # sys.stdin and sys.stdout over fds 0 and 1, reused while they stay open
_retired: list[Any] = []  # streams whose flush failed: kept, so their unwritten bytes never reach a later test


def run_stdio(code: Any, stdin: str, max_bytes: int) -> str:
    """Runs the compiled script on `stdin`; returns its stdout (decoded, invalid UTF-8 replaced).

    Per test, the stdin memfd is overwritten in place and cut to the input's length, and the test's stdout is
    what the stdout memfd gained past its end at the test's start: no page is freed and faulted again per
    test (the stdout memfd is emptied once what it keeps passes STDOUT_KEEP_BYTES, or could leave a test less
    than `max_bytes` under the file size limit)."""
    if not _fds:  # once per run: the memfds are reused from test to test
        _fds.extend((_above_stdio(_dup(1)), _above_stdio(_memfd("stdin")), _above_stdio(_memfd("stdout"))))
    saved_out, in_fd, out_fd = _fds
    try:
        data = stdin.encode("utf-8", "surrogatepass")
        written = 0
        while written < len(data):
            written += _pwrite(in_fd, data[written:], written)
        _ftruncate(in_fd, len(data))
        start = _lseek(out_fd, 0, _SEEK_END)
        if start > STDOUT_KEEP_BYTES or start + max_bytes > max_file_bytes:
            _ftruncate(out_fd, 0)
            start = _lseek(out_fd, 0, 0)
        _dup2(in_fd, 0)  # again each test: the program may have closed or replaced fds 0 and 1
        _dup2(out_fd, 1)
        sys.stdin = _reader()
        stdout = sys.stdout = _writer()
        try:
            _exec_main(code)
        finally:
            _flush(stdout)
            if sys.stdout is not stdout:
                _flush(sys.stdout)
        return _read_from(out_fd, start, max_bytes).decode("utf-8", "replace")
    finally:
        _dup2(saved_out, 1)


def _flush(stream: Any) -> None:
    try:
        stream.flush()
    except Exception:  # closed fd 1, file size limit, a stream of the program's: whatever is left stays out
        _retired.append(stream)
        if stream is _streams[1]:
            _streams[1] = None


def _usable(stream: Any) -> bool:
    try:
        return stream is not None and not stream.closed
    except Exception:  # detached by the program (`io.TextIOWrapper(sys.stdout.detach())`)
        return False


def _reader() -> Any:
    """sys.stdin for a test, at the start of its input (the last test's, unless the program closed it)."""
    reader = _streams[0]
    if _usable(reader):
        try:
            reader.seek(0)  # drops what the last test left buffered, and rewinds fd 0 (shared with the memfd)
            return reader
        except Exception:
            pass
    _lseek(0, 0, 0)
    reader = _streams[0] = _TextIOWrapper(_BufferedReader(_FileIO(0, "r", closefd=False)), encoding="utf-8",
                                          errors="replace")
    return reader


def _writer() -> Any:
    """sys.stdout for a test: the last test's (flushed empty at its end), unless the program closed it."""
    writer = _streams[1]
    if not _usable(writer):
        writer = _streams[1] = _TextIOWrapper(_BufferedWriter(_FileIO(1, "w", closefd=False)), encoding="utf-8",
                                              errors="replace")
    return writer


def _above_stdio(fd: int) -> int:
    """`fd`, moved above 0-2 if it landed there (a program that closed its stdin frees fd 0, and the
    lowest free descriptor is what the kernel hands out next)."""
    if fd > 2:
        return fd
    spare = [fd]
    while spare[-1] <= 2:
        spare.append(_dup(fd))
    for extra in spare[:-1]:
        _close(extra)
    return spare[-1]


def _exec_main(code: Any) -> None:
    module = _ModuleType("__main__")
    module.__builtins__ = builtins  # type: ignore[attr-defined]
    sys.modules["__main__"] = module
    try:
        exec(code, module.__dict__)
    except SystemExit as exc:
        status = exc.code
        if status is None or status == 0:
            return
        raise ScriptExit(f"the program exited with status {status!r}"[:200]) from None


def _read_from(fd: int, start: int, max_bytes: int) -> bytes:
    """What the memfd holds past `start`, in one read of exactly that size."""
    end = _fstat(fd).st_size
    if end - start > max_bytes:
        raise ValueError(f"output over {max_bytes} bytes")
    chunks, offset = [], start
    while offset < end:
        chunk = _pread(fd, end - offset, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def run_call(namespace: dict[str, Any], name: str, args: list[Any]) -> Any:
    """Calls the program's function, or the method of a fresh `Solution()` (LeetCode style)."""
    solution = namespace.get("Solution")
    if isinstance(solution, type) and hasattr(solution, name):
        return getattr(solution(), name)(*args)
    if name not in namespace:
        raise NameError(f"the program defines no function {name!r}")
    return namespace[name](*args)
