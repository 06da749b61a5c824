"""The forker: the pristine process every run is cloned from. It never sees a job.

The zygote handles jobs, so its heap holds what earlier jobs left behind (responses, hole sources, result
values, freed but not wiped). A run cloned from the zygote could read the previous run's job in its own
memory. The forker is a fresh interpreter the zygote starts (fork and exec) once the slot's namespaces and
file system view are in place; afterwards it only clones runs and reaps them on request, so a run's memory
holds nothing but the forker's startup state.

It imports only what a run needs (this module, the runner, the isolation primitives) and the operator's
preloaded modules (`ACECODER_SANDBOX_PRELOAD`). Every page the forker holds is a page-table entry that each
run's clone copies and each run's exit frees, plus copy-on-write faults for the pages a run writes: the
zygote's own modules (supervising, watching, hole compiling) and rarely used preloads (dataclasses with
inspect, hashlib, datetime) made runs ~8% more expensive in CPU here (a fork-floor A/B: 3.9 vs 3.5 ms per
HumanEval program, 10.0 vs 8.5 MB of anonymous memory).

Protocol on a SOCK_SEQPACKET pair. First, forker -> zygote: b"+" (ready) or b"E<error>" (then it exits).
Zygote -> forker: b"S" (clone a run), b"R<pid>" (kill and reap it), b"X<pid>" (kill and reap it, then clone
the next run: one round trip between two programs). Forker -> zygote: b"<pid>" with the run's
[job_w, result_r, output_r] attached, or b"E<error>"; for a reap, b"<wait status>".
"""

from __future__ import annotations

# `_socket`, not `socket`: the socket module's enums cost every run ~190 KB (see above).
import _socket
import contextlib
import ctypes
import gc
import importlib
import json
import marshal
import os
import select
import signal
import site
import struct
import sys
from typing import Any, NoReturn

from acecoder_reward.sandbox_worker import isolation, runner

PR_SET_PDEATHSIG = 1
WARM_UP_AFTER_S = 0.001  # a spare warms up when its job has not come this long after it is ready
# What candidates commonly import, so a run pays a fork, not an import. Each costs every run its pages (see
# above): listed are the common ones that cost little; the runner itself loads json, decimal and fractions.
DEFAULT_PRELOAD = ("bisect", "collections", "copy", "functools", "heapq", "itertools", "math", "re", "string",
                   "typing")
READY_TIMEOUT_S = 45.0  # shorter than the pool's wait for its zygote, so the reason reaches the operator
# What the forker process runs (`python -c`): without `site`, sys.path must be set before the first import.
BOOTSTRAP = ("import json, sys; sys.path[:] = json.loads(sys.argv[2])['path']; "
             "from acecoder_reward.sandbox_worker.forker import main; main()")


class ForkerFailed(RuntimeError):
    """The forker could not start (a preload that does not import, or an interpreter that cannot start)."""


class Forker:
    """The zygote's handle on its forker process.

    `config`: uid, mode ('root' | 'userns' | 'none'), warm_up (bool), preload (module names) and namespaces
    (the clone flags the zygote settled on, see isolation.RUN_NAMESPACES)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self._sock, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        fd = theirs.fileno()
        # -S: no `site`. Its .pth processing is for the installer's benefit (an editable install's finder
        # alone pulls in pathlib, urllib and ipaddress: 0.8 MB in every run); the forker gets the zygote's
        # sys.path, which already holds what the .pth files add, and `site`'s builtins (main() below).
        # -B: the file system is read-only here anyway; do not even try to write bytecode.
        package = os.path.dirname(os.path.abspath(__file__))
        # The directory that holds `acecoder_reward` (site-packages, or an editable install's src/).
        config = {**config, "path": [*sys.path, os.path.dirname(os.path.dirname(package))], "package": package,
                  "prefix": sys.prefix, "exec_prefix": sys.exec_prefix, "parent": os.getpid()}
        argv = [sys.executable, "-I", "-S", "-B", "-c", BOOTSTRAP, str(fd), json.dumps(config)]
        self.pid = os.fork()
        if self.pid == 0:
            try:
                os.closerange(3, fd)  # the zygote's protocol pipes and everything else it holds
                os.closerange(fd + 1, 1 << 16)
                os.set_inheritable(fd, True)
                os.execve(sys.executable, argv, dict(os.environ))  # the zygote's environment is the runs'
            finally:
                os._exit(70)
        theirs.close()
        self._sock.settimeout(READY_TIMEOUT_S)
        try:
            hello = self._sock.recv(4096)
        except OSError as exc:
            hello = b"E" + str(exc).encode()
        self._sock.settimeout(None)
        if hello != b"+":
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)  # it may still be stuck in an import
            self.close()
            raise ForkerFailed(hello[1:].decode(errors="replace") if hello else "the forker exited at startup")

    def spawn(self) -> tuple[int, int, int, int]:
        """Clones an isolated run waiting for its job: (pid, job_w, result_r, output_r)."""
        self._sock.send(b"S")
        return self._spawned()

    def reap_and_spawn(self, pid: int) -> tuple[int, int, int, int]:
        """`kill_and_reap(pid)` (the wait status is dropped), then `spawn()`, in one round trip."""
        self._sock.send(b"X%d" % pid)
        return self._spawned()

    def _spawned(self) -> tuple[int, int, int, int]:
        message, fds = _recv_fds(self._sock, 512, 3)
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


def main() -> NoReturn:
    """The forker process: `python -c BOOTSTRAP <socket fd> <config JSON>`."""
    sock = _socket.socket(fileno=int(sys.argv[1]))
    config = json.loads(sys.argv[2])
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # dies with the zygote
    if os.getppid() != config["parent"]:
        os._exit(0)  # the zygote died before the line above: nobody will ever ask for a run
    isolation.set_process_name("acecoder-forker")
    # What `site` would have set (runs see the same interpreter as the zygote), and the same package.
    sys.prefix, sys.exec_prefix = config["prefix"], config["exec_prefix"]
    here = os.path.dirname(os.path.abspath(__file__))
    if here != config["package"]:
        _refuse(sock, f"the forker imported acecoder_reward.sandbox_worker from {here}, the zygote from "
                      f"{config['package']}")
    isolation.RUN_NAMESPACES = config["namespaces"]
    for name in config["preload"]:
        try:
            importlib.import_module(name)
        except BaseException as exc:  # whatever the module raises while importing
            _refuse(sock, f"sandbox_preload: cannot import {name!r} in the sandbox: {type(exc).__name__}: {exc}")
        # A run is a clone of this thread alone: a library whose import started threads (OpenBLAS, for
        # numpy) would wait forever in the run for threads that are not there.
        if len(os.listdir("/proc/self/task")) > 1:
            _refuse(sock, f"sandbox_preload: importing {name!r} started threads, which a run cloned from the "
                          "forker would not have; leave it out (runs that need it import it themselves)")
    # With -S, `site` was imported without running: give runs the builtins it would have added.
    site.setquit()  # exit(), quit()
    site.setcopyright()
    site.sethelper()
    isolation.warm_up()
    gc.freeze()  # the child's collector then never walks (and copy-on-write faults in) this whole heap
    sock.send(b"+")
    _serve(sock, config)


def _refuse(sock: _socket.socket, reason: str) -> NoReturn:
    sock.send(b"E" + reason.encode(errors="replace")[:2000])
    os._exit(1)


def _serve(sock: _socket.socket, config: dict[str, Any]) -> NoReturn:
    isolated = config["mode"] != "none"
    while True:
        message = sock.recv(64)
        if not message:
            os._exit(0)
        if message == b"S":
            _spawn(sock, config, isolated)
        elif message.startswith(b"R"):
            sock.send(b"%d" % _kill_and_reap(int(message[1:])))
        elif message.startswith(b"X"):
            _kill_and_reap(int(message[1:]))  # gone before the next run exists: runs never overlap
            _spawn(sock, config, isolated)


def _spawn(sock: _socket.socket, config: dict[str, Any], isolated: bool) -> None:
    job_r, job_w = os.pipe()
    result_r, result_w = os.pipe()
    output_r, output_w = os.pipe()
    try:
        def body() -> NoReturn:
            _run_body(config, job_r, result_w, output_w)

        pid = isolation.clone_into_namespaces(body) if isolated else isolation.fork_plain(body)
        _send_fds(sock, b"%d" % pid, [job_w, result_r, output_r])
    except OSError as exc:
        sock.send(b"E" + str(exc).encode(errors="replace")[:400])
    finally:
        for fd in (job_r, job_w, result_r, result_w, output_r, output_w):
            os.close(fd)


def _send_fds(sock: _socket.socket, message: bytes, fds: list[int]) -> None:
    """socket.send_fds."""
    sock.sendmsg([message], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))])


def _recv_fds(sock: _socket.socket, size: int, max_fds: int) -> tuple[bytes, list[int]]:
    """socket.recv_fds."""
    message, ancillary, _, _ = sock.recvmsg(size, _socket.CMSG_LEN(max_fds * 4))
    fds: list[int] = []
    for level, kind, data in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds += struct.unpack(f"{len(data) // 4}i", data[:len(data) - len(data) % 4])
    return message, fds


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


def _run_body(config: dict[str, Any], job_r: int, result_w: int, output_w: int) -> NoReturn:
    """Inside a freshly cloned run: isolate, wait for the job, run it."""
    # A session and process group of its own: kill(0) or killpg from the run reaches only the run.
    os.setsid()
    isolation.set_process_name("acecoder-run")
    os.dup2(job_r, 0)
    os.dup2(result_w, runner.RESULT_FD)
    os.dup2(output_w, 1)
    os.dup2(output_w, 2)
    os.closerange(runner.RESULT_FD + 1, 1 << 16)  # the forker's socket and everything else
    isolation.isolate(config["uid"], config["mode"], config["scratch_mb"])
    # Only when no job is there soon: under load the next job is usually waiting within a millisecond,
    # and warming up then only delays it and spends CPU a run needs.
    if config["warm_up"] and not select.select([0], [], [], WARM_UP_AFTER_S)[0]:
        runner.warm_up()
    message = _read_frame(0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    isolation.apply_limits(_run_limits(message["job"]["limits"]))
    runner.run(message["job"], message["start"], message["compiled"])


def _read_frame(fd: int) -> dict[str, Any]:
    (size,) = struct.unpack(">I", _read_exact(fd, 4))
    return marshal.loads(_read_exact(fd, size))  # type: ignore[no-any-return]


def _read_exact(fd: int, size: int) -> bytes:
    chunks = []
    while size:
        chunk = os.read(fd, size)
        if not chunk:
            os._exit(0)  # the zygote went away before sending a job
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _run_limits(limits: dict[str, Any]) -> isolation.RunLimits:
    return isolation.RunLimits(
        memory_mb=limits["memory_mb"], cpu_s=int(limits["program_timeout_s"]) + 1,
        max_processes=limits["max_processes"], max_open_files=limits["max_open_files"],
        max_file_bytes=limits["max_file_bytes"])
