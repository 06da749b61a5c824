"""Supervising a program's runs: spawning isolated children, per-test restarts, typed program status.

Runs inside the zygote. A program's tests run in one child; when a test times out, crashes or exits the
process, that test gets its outcome and a fresh child resumes at the next test, while the program-wide
deadline still holds. The child is watched from outside (`watch.Watcher`) and ended by one SIGKILL to its
PID 1, which takes its whole PID namespace down.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import select
import signal
import struct
import time
from dataclasses import dataclass
from typing import Any

from acecoder_reward.sandbox_worker import cgroups, isolation
from acecoder_reward.sandbox_worker.forker import DEFAULT_PRELOAD, Forker
from acecoder_reward.sandbox_worker.hole_cache import HoleCache
from acecoder_reward.sandbox_worker.watch import RunEnd, TestState, Watcher
from acecoder_reward.sandbox_worker.zygote_protocol import Stream

ZYGOTE_ALLOWANCE_MB = 64  # the zygote shares its slot's memory cgroup
ZYGOTE_PROCESSES = 3  # the zygote, its forker and the spare run share the slot's pids cgroup


@dataclass
class _Child:
    """An isolated child, cloned ahead of time, blocked reading its job from `job_w`'s pipe."""

    pid: int
    pidfd: int
    job_w: int
    result_r: int
    output_r: int

    def close(self) -> None:
        for fd in (self.pidfd, self.job_w, self.result_r, self.output_r):
            with contextlib.suppress(OSError):
                os.close(fd)


class Supervisor:
    """Runs programs in isolated children. The next child is cloned and isolated while the zygote is idle
    (`prepare`), and a finished child is reaped after the report went out (`release`): namespace setup and
    teardown stay off the request's path."""

    def __init__(self, mode: str, uid: int, cgroup: cgroups.SlotCgroup | None, scratch_mb: int,
                 warm_up: bool = True, preload: tuple[str, ...] = DEFAULT_PRELOAD) -> None:
        self.mode = mode
        self.uid = uid
        self.cgroup = cgroup
        self.holes = HoleCache()
        self.epoll = select.epoll()  # reused: one epoll instance for all runs
        self._spare: _Child | None = None
        self._result_budget = 0
        # Started now, before the first job: runs are cloned from it and never see what jobs left behind.
        # warm_up: see runner.warm_up (latency for CPU).
        self.forker = Forker({"uid": uid, "mode": mode, "scratch_mb": scratch_mb, "warm_up": warm_up,
                              "preload": list(preload), "namespaces": isolation.RUN_NAMESPACES})
        self._finished: _Child | None = None

    def self_check(self) -> None:
        """One trivial isolated run at startup, so a refused namespace fails the worker, not a request."""
        report = self.run_program({"response": "x = 1", "names": [], "tests": [{"holes": ["x"], "in_sandbox": False}],
                                   "limits": _default_limits(), "allowed_modules": []})
        self.release()
        if report["tests"][0]["state"] != "done" or report["status"] != "ok":
            raise isolation.IsolationUnavailable(f"sandbox self-check failed: {report}")

    def prepare(self) -> None:
        if self._spare is None:
            with contextlib.suppress(OSError):  # retried, and reported, when the next job needs it
                self._spare = self._spawn()

    def close(self) -> None:
        """Ends the spare and any finished child, so the slot's cgroups are empty and can be removed."""
        if self._finished is not None:
            self._kill_and_reap(self._finished.pid)
            self._finished.close()
            self._finished = None
        if self._spare is not None:
            self._kill_and_reap(self._spare.pid)
            self._spare.close()
            self._spare = None
        self.forker.close()

    def release(self) -> None:
        """Reaps the finished child and, when there is no spare, clones the next one in the same round trip."""
        if self._finished is None:
            return
        finished, self._finished = self._finished, None
        finished.close()
        if self._spare is not None:
            self._kill_and_reap(finished.pid)
            return
        try:
            self._spare = self._child(*self.forker.reap_and_spawn(finished.pid))
        except OSError:
            pass  # reaped all the same; the clone is retried, and reported, when the next job needs it

    def run_program(self, job: dict[str, Any], stream: Stream | None = None) -> dict[str, Any]:
        """Runs the job's program on its tests; with `stream`, until its owner says stop (the tests not
        finished by then stay not_run, and the status is what it was)."""
        limits = job["limits"]
        started = time.monotonic()
        program_deadline = started + limits["program_timeout_s"]
        tests = [TestState() for _ in job["tests"]]
        self._result_budget = int(limits["max_result_bytes"])
        status, output, kills, runs, start = "ok", b"", [], 0, 0
        code: str | None = None
        compiled = self.holes.compile_job(job["tests"])
        while True:
            runs += 1
            try:
                end, watcher = self._run_child(job, compiled, start, tests, program_deadline, limits, stream)
            except isolation.IsolationUnavailable as exc:
                for t in tests[start:]:
                    t.state, t.error = "error", str(exc)
                status = "infra_error"
                break
            output = output or watcher.output_head
            code = code or watcher.code
            if end.reason == "no_code":
                status = "no_code"
                for t in tests:
                    t.error = end.detail
                break
            if end.reason == "done":
                if end.detail == "memory_exceeded" and status == "ok":
                    status = "memory_exceeded"
                break
            if end.reason == "stopped":
                break
            if end.reason == "load_error":
                status = _load_status(end.detail)
                for t in tests[start:]:
                    t.state, t.error = "error", f"program failed before the tests: {end.detail}"
                break
            kills.append(end.reason)
            status = status if status != "ok" else _status_of(end)
            nxt = self._mark_interrupted(end, tests, start)
            if (end.reason == "program_timeout" or nxt >= len(tests) or nxt <= start - 1
                    or job.get("stop_on_first_failure")):  # the interrupted test failed: the rest are not run
                break
            start = nxt
        return {"status": status, "code": code, "tests": [t.__dict__ for t in tests], "runs": runs, "kills": kills,
                "output": output.decode("utf-8", "replace"), "run_time_s": time.monotonic() - started}

    def _mark_interrupted(self, end: RunEnd, tests: list[TestState], start: int) -> int:
        """Gives the interrupted test its outcome; returns where the next child resumes."""
        current = end.current
        if current is None:
            # Died between tests (or before the first): the next unstarted test is the culprit.
            current = max(end.last_started + 1, start)
            if current >= len(tests):
                return current
        test = tests[current]
        if end.reason in ("test_timeout", "program_timeout"):
            test.state, test.error = "timeout", end.detail
        else:
            test.state, test.error = "error", end.detail
        return current + 1

    def _run_child(self, job: dict[str, Any], compiled: list[list[Any]], start: int, tests: list[TestState],
                   program_deadline: float, limits: dict[str, Any],
                   stream: Stream | None) -> tuple[RunEnd, Watcher]:
        oom_before = 0
        if self.cgroup is not None:
            self.cgroup.set_limit(limits["memory_mb"] + ZYGOTE_ALLOWANCE_MB)
            self.cgroup.set_pids_limit(limits["max_processes"] + ZYGOTE_PROCESSES)
            oom_before = self.cgroup.oom_kills()
        child = self._dispatch({"job": job, "start": start, "compiled": compiled})
        watcher = Watcher(child.result_r, child.output_r, child.pidfd, tests, limits, self.epoll,
                          self._result_budget, stream)
        try:
            end = watcher.watch(program_deadline)
        except BaseException:
            self._kill_and_reap(child.pid)
            child.close()
            raise
        finally:
            self._result_budget -= watcher.result_bytes  # one cap for the whole program, across restarts
        if end.reason == "done":
            self._finished = child  # reaped after the report is sent
            if self.cgroup is not None and self.cgroup.oom_kills() > oom_before:
                end.detail = "memory_exceeded"  # a process of the run was OOM-killed; the tests still finished
            return end, watcher
        wait_status = self._kill_and_reap(child.pid)
        child.close()
        if end.reason == "exited":
            end = _refine_exit(end, wait_status)
        if self.cgroup is not None and self.cgroup.oom_kills() > oom_before:
            end = RunEnd("memory_exceeded", f"memory limit of {limits['memory_mb']} MB exceeded", end.current,
                         end.last_started)
        return end, watcher

    def _dispatch(self, message: dict[str, Any]) -> _Child:
        """Hands the job to the spare child (cloning one if there is none, or if the spare died)."""
        # marshal, not JSON: the run decodes it in freshly cloned memory, and each page its decoder touches
        # is a copy-on-write fault; marshal touches about half as many. Only the zygote writes this pipe.
        payload = marshal.dumps(message)
        data = struct.pack(">I", len(payload)) + payload
        for _ in range(2):
            child, self._spare = self._spare or self._spawn_retrying(), None
            try:
                _write_all(child.job_w, data)
            except OSError:  # the spare is gone (killed from outside); take a fresh one
                self._kill_and_reap(child.pid)
                child.close()
                continue
            os.close(child.job_w)
            child.job_w = -1
            return child
        raise isolation.IsolationUnavailable("sandbox children die before their job arrives")

    def _spawn_retrying(self) -> _Child:
        """clone() can fail for a moment (EAGAIN) while a killed run's processes are still being released."""
        for delay in (0.0, 0.01, 0.05, 0.2, 0.5):
            time.sleep(delay)
            try:
                return self._spawn()
            except OSError as exc:
                error = exc
        raise isolation.IsolationUnavailable(f"cannot start a sandboxed process: {error}")

    def _spawn(self) -> _Child:
        return self._child(*self.forker.spawn())

    def _child(self, pid: int, job_w: int, result_r: int, output_r: int) -> _Child:
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            for fd in (job_w, result_r, output_r):
                os.close(fd)
            self._kill_and_reap(pid)  # never left behind, holding a place in the slot's pids cgroup
            raise
        return _Child(pid, pidfd, job_w, result_r, output_r)

    def _kill_and_reap(self, pid: int) -> int:
        return self.forker.kill_and_reap(pid)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def _refine_exit(end: RunEnd, wait_status: int) -> RunEnd:
    if os.WIFSIGNALED(wait_status):
        sig = os.WTERMSIG(wait_status)
        if sig == signal.SIGXCPU:
            return RunEnd("cpu_exceeded", "CPU time limit exceeded", end.current, end.last_started)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        return RunEnd("signaled", f"process killed by {name}", end.current, end.last_started)
    code = os.WEXITSTATUS(wait_status)
    return RunEnd("exited", f"the program exited with status {code} before finishing its tests",
                  end.current, end.last_started)


_STATUS_BY_END = {
    "test_timeout": "timeout", "program_timeout": "timeout", "cpu_exceeded": "timeout",
    "output_exceeded": "output_exceeded", "result_exceeded": "output_exceeded",
    "protocol_error": "crashed", "signaled": "crashed", "exited": "exited", "memory_exceeded": "memory_exceeded",
}


def _status_of(end: RunEnd) -> str:
    if end.reason == "signaled" and "SIGKILL" in end.detail:
        return "memory_exceeded"  # nobody but the kernel's OOM killer sends SIGKILL we did not send
    return _STATUS_BY_END.get(end.reason, "crashed")


def _load_status(error: str) -> str:
    if error.startswith(("SyntaxError", "IndentationError", "TabError")):
        return "syntax_error"
    if error.startswith("MemoryError"):
        return "memory_exceeded"
    return "runtime_error"


def _default_limits() -> dict[str, Any]:
    return {"test_timeout_s": 10.0, "program_timeout_s": 20.0, "memory_mb": 1024, "max_processes": 8,
            "max_open_files": 64, "max_file_bytes": 1 << 20, "max_output_bytes": 1 << 16,
            "max_result_bytes": 1 << 16}
