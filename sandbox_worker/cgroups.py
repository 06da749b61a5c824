"""A memory cgroup per zygote slot: one limit on all the memory a run's processes hold together.

rlimits bound each process (RLIMIT_AS), so a run that spreads a memory bomb over its children could hold
`max_processes * memory_mb`. A cgroup bounds the sum. The zygote creates its slot's cgroup at startup (it
is root then and the file system still writable) and moves itself in, so each run is born inside it; it
sets the limit (its own small footprint plus the run's memory_mb) before each run and shields itself with
oom_score_adj -1000, while runs raise theirs to 1000. The kernel's OOM killer then ends the run, which the
zygote reports as memory_exceeded (it reads the cgroup's oom-kill counter).

Supported: cgroup v1 (a writable `memory` hierarchy) and cgroup v2 (the zygote's own cgroup has the memory
controller enabled for its children). Where neither is available the run falls back to rlimits only.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

V1_MEMORY = "/sys/fs/cgroup/memory"
V2_ROOT = "/sys/fs/cgroup"
V1_PIDS = "/sys/fs/cgroup/pids"


@dataclass
class SlotCgroup:
    path: str
    version: int
    limit_mb: int = 0
    pids_path: str | None = None  # where pids.max lives: the same dir (v2), or the v1 pids hierarchy
    pids_limit: int = 0
    _events_fd: int = -1  # the oom-kill counter's file, kept open: it is read around every run

    def set_pids_limit(self, count: int) -> None:
        """A second bound on fork bombs, next to RLIMIT_NPROC (which the kernel skips for host root)."""
        if self.pids_path is None or count == self.pids_limit:
            return
        self.pids_limit = count if _try_write(os.path.join(self.pids_path, "pids.max"), str(count)) else 0

    @property
    def limit_file(self) -> str:
        return os.path.join(self.path, "memory.limit_in_bytes" if self.version == 1 else "memory.max")

    @property
    def procs_file(self) -> str:
        return os.path.join(self.path, "cgroup.procs")

    def set_limit(self, memory_mb: int) -> None:
        if memory_mb == self.limit_mb:
            return
        value = str(memory_mb * 1024 * 1024)
        if self.version == 1:
            # v1 wants memory <= memory+swap at every step: raise memsw first, lower it last.
            memsw = os.path.join(self.path, "memory.memsw.limit_in_bytes")
            ok = _try_write(memsw, value) | _try_write(self.limit_file, value) | _try_write(memsw, value)
            ok = ok and _try_write(self.limit_file, value)
        else:
            ok = _try_write(self.limit_file, value)
        self.limit_mb = memory_mb if ok else 0

    def oom_kills(self) -> int:
        try:
            if self._events_fd < 0:
                name = "memory.oom_control" if self.version == 1 else "memory.events"
                self._events_fd = os.open(os.path.join(self.path, name), os.O_RDONLY | os.O_CLOEXEC)
            text = os.pread(self._events_fd, 4096, 0)  # a cgroup file re-renders at offset 0
        except OSError:
            return 0
        for line in text.split(b"\n"):
            key, _, value = line.partition(b" ")
            if key == b"oom_kill":
                return int(value)
        return 0

    def join(self) -> None:
        """The zygote joins at startup, so every run it clones is born inside (joining per run costs ms)."""
        with open(self.procs_file, "w") as f:
            f.write("0")
        if self.pids_path is not None and self.pids_path != self.path:
            _try_write(os.path.join(self.pids_path, "cgroup.procs"), "0")

    def leave_and_remove(self) -> None:
        if self._events_fd >= 0:
            os.close(self._events_fd)
            self._events_fd = -1
        for path in {self.path, self.pids_path} - {None}:
            assert path is not None
            _try_write(os.path.join(os.path.dirname(path), "cgroup.procs"), "0")
            try:
                os.rmdir(path)
            except OSError:
                pass


def mount_root_of(path: str) -> str:
    """The mount point holding `path` (mount_setattr acts on whole mounts only)."""
    best = "/"
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4]
            if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) > len(best):
                best = point
    return best


def _try_write(path: str, value: str) -> bool:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError:
        return False
    return True


def _own_cgroup(controller: str) -> str | None:
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if controller in controllers.split(",") or (controller == "" and controllers == ""):
                return path
    return None


def create_slot_cgroup(name: str) -> SlotCgroup | None:
    """Creates (or reuses) the slot's memory cgroup; None where the kernel or permissions refuse."""
    for version, base in ((1, _v1_parent()), (2, _v2_parent())):
        if base is None:
            continue
        path = os.path.join(base, name)
        try:
            os.makedirs(path, exist_ok=True)
            cgroup = SlotCgroup(path, version)
            if os.path.exists(cgroup.limit_file):
                cgroup.set_limit(64)
                cgroup.pids_path = _pids_dir(cgroup, name)
                return cgroup
            os.rmdir(path)
        except OSError:
            continue
    return None


def remove_stale(name: str) -> None:
    """Removes empty slot cgroups (`acecoder-<pid>-<slot>`) left by gateways that were killed (their
    zygotes had no chance to clean up); a live gateway's cgroups are never touched."""
    prefix = name.split("-")[0] + "-"
    for base in (_v1_parent(), _v2_parent(), _pids_parent()):
        if base is None or not os.path.isdir(base):
            continue
        for entry in os.listdir(base):
            parts = entry.split("-")
            stale = (entry.startswith(prefix) and len(parts) == 3 and parts[1].isdigit()
                     and not os.path.exists(f"/proc/{parts[1]}"))
            if stale:
                with contextlib.suppress(OSError):
                    os.rmdir(os.path.join(base, entry))


def _pids_parent() -> str | None:
    own = _own_cgroup("pids")
    if own is None or not os.path.isdir(V1_PIDS):
        return None
    return os.path.join(V1_PIDS, own.lstrip("/"))


def _pids_dir(cgroup: SlotCgroup, name: str) -> str | None:
    if cgroup.version == 2:
        return cgroup.path if os.path.exists(os.path.join(cgroup.path, "pids.max")) else None
    parent = _pids_parent()
    if parent is None:
        return None
    path = os.path.join(parent, name)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return None
    return path if os.path.exists(os.path.join(path, "pids.max")) else None


def _v1_parent() -> str | None:
    own = _own_cgroup("memory")
    if own is None or not os.path.isdir(V1_MEMORY):
        return None
    return os.path.join(V1_MEMORY, own.lstrip("/"))


def _v2_parent() -> str | None:
    if not os.path.exists(os.path.join(V2_ROOT, "cgroup.controllers")):
        return None
    own = _own_cgroup("")
    return None if own is None else os.path.join(V2_ROOT, own.lstrip("/"))
