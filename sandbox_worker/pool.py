"""A pool of zygotes driven from asyncio: the owner side of the zygote protocol.

Each zygote runs one program at a time, so the pool size is the number of programs run at once. A zygote
that dies or stops answering (it never should: runs are watched from inside it) is killed and replaced, and
the program it held gets an `infra_error` report instead of hanging its caller.
"""

from __future__ import annotations

import asyncio
import json
import logging
import marshal
import os
import struct
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from acecoder_reward.sandbox_worker.forker import DEFAULT_PRELOAD
from acecoder_reward.sandbox_worker.isolation import IsolationUnavailable
from acecoder_reward.sandbox_worker.zygote_protocol import PROGRESS_FLAG, STOP_FRAME

log = logging.getLogger(__name__)

# The zygote's whole environment: nothing the worker holds (tokens, Redis URL) reaches it or its runs.
ZYGOTE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
REPLY_GRACE_S = 10.0
RESTART_BACKOFF_S = 1.0
START_TIMEOUT_S = 60.0  # a zygote that has not said hello by then is taken as unable to start


@dataclass(frozen=True)
class PoolConfig:
    size: int
    isolation: str  # "namespaces" or "none"
    hidden_paths: tuple[str, ...]
    uid_base: int
    scratch_mb: int
    warm_up: bool = True
    preload: tuple[str, ...] = DEFAULT_PRELOAD


# Judges a progress frame (marshal [(test index, state), ...]); True stops the run.
OnTests = Callable[[bytes], Awaitable[bool]]


class _Zygote:
    def __init__(self, proc: asyncio.subprocess.Process, mode: str, cgroup: int | None) -> None:
        self.proc = proc
        self.mode = mode
        self.cgroup = cgroup

    async def request(self, job: dict[str, Any], timeout_s: float, on_tests: OnTests | None = None) -> bytes:
        """Sends a job, returns the raw report: the caller parses it (off the event loop when it is big).

        With `on_tests`, the job streams: the zygote sends the tests that finished as progress frames before
        the report, and the first frame `on_tests` judges failing gets a stop frame back."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        # marshal both ways, not JSON: ~10x cheaper to build and parse (a report's JSON parse alone was ~50 us,
        # on the gateway's one event loop); both ends are this package's own trusted processes.
        payload = marshal.dumps({**job, "stream": True} if on_tests is not None else job)
        self.proc.stdin.write(struct.pack(">I", len(payload)) + payload)
        await self.proc.stdin.drain()
        stopped = on_tests is None
        async with asyncio.timeout(timeout_s):  # unlike wait_for, no extra task per program
            while True:
                (size,) = struct.unpack(">I", await self.proc.stdout.readexactly(4))
                if not size & PROGRESS_FLAG:
                    return await self.proc.stdout.readexactly(size)
                progress = await self.proc.stdout.readexactly(size & ~PROGRESS_FLAG)
                if not stopped and on_tests is not None and await on_tests(progress):
                    stopped = True  # one stop per job; the zygote skips it if the run had already ended
                    self.proc.stdin.write(STOP_FRAME)
                    await self.proc.stdin.drain()

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()


async def _read_raw_frame(stream: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack(">I", await stream.readexactly(4))
    return await stream.readexactly(size)


async def _read_frame(stream: asyncio.StreamReader) -> dict[str, Any]:
    return marshal.loads(await _read_raw_frame(stream))  # type: ignore[no-any-return]


async def _start_zygote(config: PoolConfig, slot: int) -> _Zygote:
    zygote_config = {"isolation": config.isolation, "hidden_paths": list(config.hidden_paths),
                     "uid": config.uid_base + slot, "scratch_mb": config.scratch_mb,
                     "warm_up": config.warm_up, "preload": list(config.preload),
                     "cgroup_name": f"acecoder-{os.getpid()}-{slot}"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-m", "acecoder_reward.sandbox_worker.zygote", json.dumps(zygote_config),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd="/", env=ZYGOTE_ENV,
        limit=1 << 26, start_new_session=True)
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(START_TIMEOUT_S):  # not wait_for: on 3.11 it can lose a cancel (gh-86296)
            hello = await _read_frame(proc.stdout)
    except (TimeoutError, asyncio.IncompleteReadError) as exc:
        proc.kill()
        raise IsolationUnavailable("sandbox zygote failed to start") from exc
    except asyncio.CancelledError:  # the pool is closing: leave no zygote behind
        proc.kill()
        raise
    if not hello.get("ready"):
        await proc.wait()
        raise IsolationUnavailable(str(hello.get("error")))
    return _Zygote(proc, str(hello["mode"]), hello.get("cgroup"))


class SandboxPool:
    """`await pool.run(job)` runs one program on a free zygote and returns the zygote's report."""

    def __init__(self, config: PoolConfig) -> None:
        self.config = config
        self._idle: asyncio.Queue[tuple[int, _Zygote]] = asyncio.Queue()
        self._all: dict[int, _Zygote] = {}
        self.mode = "unstarted"
        self._restarts: set[asyncio.Task[None]] = set()
        self.cgroup: int | None = None

    async def start(self) -> None:
        zygotes = await asyncio.gather(*(_start_zygote(self.config, s) for s in range(self.config.size)))
        for slot, zygote in enumerate(zygotes):
            self._all[slot] = zygote
            self._idle.put_nowait((slot, zygote))
        self.mode = zygotes[0].mode
        self.cgroup = zygotes[0].cgroup
        if self.cgroup is None and self.mode != "none":
            log.warning("no memory cgroup available: memory is limited per process only (rlimits)")
        if self.mode == "none":
            log.warning("sandbox isolation is OFF (ACECODER_SANDBOX_ISOLATION=none): candidates are not contained")

    async def close(self) -> None:
        """Closing stdin lets each zygote remove its cgroup; a zygote that lingers is killed."""
        restarts = list(self._restarts)
        for task in restarts:
            task.cancel()
        if restarts:  # each kills the zygote it was starting
            await asyncio.wait(restarts, timeout=5)
        zygotes = list(self._all.values())
        for zygote in zygotes:
            if zygote.proc.stdin is not None:
                zygote.proc.stdin.close()
        for zygote in zygotes:
            try:
                await asyncio.wait_for(zygote.proc.wait(), 5)
            except TimeoutError:
                zygote.kill()
                await zygote.proc.wait()

    @property
    def busy(self) -> int:
        return self.config.size - self._idle.qsize()

    async def run(self, job: dict[str, Any], on_tests: OnTests | None = None) -> bytes | None:
        """The zygote's report, marshal bytes (the executor decodes them); None when the sandbox itself failed
        (the item is an infra_error). `on_tests`: see `_Zygote.request`."""
        slot, zygote = await self._idle.get()
        while zygote.proc.returncode is not None:  # died while idle: replace it before handing it work
            log.error("sandbox zygote %d exited while idle (%s); replacing it", slot, zygote.proc.returncode)
            await self._replace(slot, zygote)
            slot, zygote = await self._idle.get()
        timeout_s = job["limits"]["program_timeout_s"] + REPLY_GRACE_S
        try:
            report = await zygote.request(job, timeout_s, on_tests)
        except asyncio.CancelledError:
            # The caller went away mid-run (its client left, or a stopping worker cut the job off): the zygote's
            # reply would desynchronise the protocol. It is replaced in the background: the caller ends now, not
            # once a new zygote has started (seconds on a loaded machine).
            zygote.kill()
            self._all.pop(slot, None)
            self._restart_soon(slot, 0.0)
            raise
        except Exception as exc:  # whatever broke, the slot is replaced, never leaked
            log.error("sandbox zygote %d failed (%s); replacing it", slot, type(exc).__name__)
            await self._replace(slot, zygote)
            return None
        self._idle.put_nowait((slot, zygote))
        return report

    async def _replace(self, slot: int, zygote: _Zygote) -> None:
        """Kills and restarts a slot's zygote; retried in the background until it comes back."""
        zygote.kill()
        self._all.pop(slot, None)
        try:
            await asyncio.shield(self._restart(slot))
        except IsolationUnavailable:
            log.exception("could not restart sandbox zygote %d; retrying", slot)
            self._restart_soon(slot, RESTART_BACKOFF_S)

    async def _restart(self, slot: int) -> None:
        fresh = await _start_zygote(self.config, slot)
        self._all[slot] = fresh
        self._idle.put_nowait((slot, fresh))

    def _restart_soon(self, slot: int, delay_s: float) -> None:
        """Restarts a slot's zygote in the background, retried until it comes back; `close` cancels it."""
        task = asyncio.get_running_loop().create_task(self._restart_later(slot, delay_s))
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    async def _restart_later(self, slot: int, delay_s: float) -> None:
        while slot not in self._all:
            await asyncio.sleep(delay_s)
            delay_s = RESTART_BACKOFF_S
            try:
                await self._restart(slot)
            except IsolationUnavailable:
                log.warning("sandbox zygote %d still cannot start", slot)

    @property
    def live(self) -> int:
        """Zygotes running now; 0 means no test reward can be computed (health answers 503)."""
        return sum(1 for z in self._all.values() if z.proc.returncode is None)


def default_pool_size() -> int:
    """One zygote per CPU, plus one: a zygote is idle while the gateway turns its report around, and the
    spare keeps the CPUs busy meanwhile (HumanEval here: ~215 programs/s with 3 on 2 cores, ~185 with 2)."""
    return max(1, len(os.sched_getaffinity(0))) + 1
