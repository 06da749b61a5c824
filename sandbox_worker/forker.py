"""The forker: the pristine process every run is cloned from. It never sees a job.

The zygote handles jobs, so its heap holds what earlier jobs left behind (responses, hole sources, result
values, freed but not wiped). A run cloned from the zygote could read the previous run's job in its own
memory. The forker is forked from the zygote before the first job and afterwards only clones runs and
reaps them on request, so a run's memory holds nothing but the forker's startup state.

Protocol on a SOCK_SEQPACKET pair. Zygote -> forker: b"S" (clone a run), b"R<pid>" (kill and reap it),
b"X<pid>" (kill and reap it, then clone the next run: one round trip between two programs).
Forker -> zygote: b"<pid>" with the run's [job_w, result_r, output_r] attached, or b"E<error>"; for a
reap, b"<wait status>".
"""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import socket
from collections.abc import Callable
from typing import NoReturn

from sandbox_worker import isolation

RunBody = Callable[[int, int, int], NoReturn]  # (job_r, result_w, output_w) -> runs the job, never returns
PR_SET_PDEATHSIG = 1


class Forker:
    """The zygote's handle on its forker process."""

    def __init__(self, run_body: RunBody, isolated: bool) -> None:
        self._sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.pid = os.fork()
        if self.pid == 0:
            try:
                keep = theirs.fileno()
                os.closerange(3, keep)  # the zygote's protocol pipes and everything else it holds
                os.closerange(keep + 1, 1 << 16)
                _serve(theirs, run_body, isolated)
            finally:
                os._exit(70)
        theirs.close()

    def spawn(self) -> tuple[int, int, int, int]:
        """Clones an isolated run waiting for its job: (pid, job_w, result_r, output_r)."""
        self._sock.send(b"S")
        return self._spawned()

    def reap_and_spawn(self, pid: int) -> tuple[int, int, int, int]:
        """`kill_and_reap(pid)` (the wait status is dropped), then `spawn()`, in one round trip."""
        self._sock.send(b"X%d" % pid)
        return self._spawned()

    def _spawned(self) -> tuple[int, int, int, int]:
        message, fds, _, _ = socket.recv_fds(self._sock, 512, 3)
        if not message or message.startswith(b"E"):
            for fd in fds:
                os.close(fd)
            raise OSError(message[1:].decode(errors="replace") if message else "the forker is gone")
        job_w, result_r, output_r = fds
        return int(message), job_w, result_r, output_r

    def kill_and_reap(self, pid: int) -> int:
        """SIGKILL to the run's PID 1 takes its whole PID namespace down; returns the wait status."""
        self._sock.send(b"R%d" % pid)
        reply = self._sock.recv(64)
        if not reply:
            raise OSError("the forker is gone")
        return int(reply)

    def close(self) -> None:
        self._sock.close()  # the forker reads EOF and exits
        os.waitpid(self.pid, 0)


def _serve(sock: socket.socket, run_body: RunBody, isolated: bool) -> NoReturn:
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # dies with the zygote
    isolation.set_process_name("acecoder-forker")
    isolation.warm_up()
    gc.freeze()
    while True:
        message = sock.recv(64)
        if not message:
            os._exit(0)
        if message == b"S":
            _spawn(sock, run_body, isolated)
        elif message.startswith(b"R"):
            sock.send(b"%d" % _kill_and_reap(int(message[1:])))
        elif message.startswith(b"X"):
            _kill_and_reap(int(message[1:]))  # gone before the next run exists: runs never overlap
            _spawn(sock, run_body, isolated)


def _spawn(sock: socket.socket, run_body: RunBody, isolated: bool) -> None:
    job_r, job_w = os.pipe()
    result_r, result_w = os.pipe()
    output_r, output_w = os.pipe()
    try:
        def body() -> NoReturn:
            run_body(job_r, result_w, output_w)

        pid = isolation.clone_into_namespaces(body) if isolated else isolation.fork_plain(body)
        socket.send_fds(sock, [b"%d" % pid], [job_w, result_r, output_r])
    except OSError as exc:
        sock.send(b"E" + str(exc).encode(errors="replace")[:400])
    finally:
        for fd in (job_r, job_w, result_r, result_w, output_r, output_w):
            os.close(fd)


def _kill_and_reap(pid: int) -> int:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return 0
    return status
