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

import os
from dataclasses import dataclass

V1_MEMORY = "/sys/fs/cgroup/memory"
V2_ROOT = "/sys/fs/cgroup"


@dataclass
class SlotCgroup:
    path: str
    version: int
    limit_mb: int = 0

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
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        try:
            with open(os.path.join(self.path, name)) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except OSError:
            pass
        return 0

    def join(self) -> None:
        """The zygote joins at startup, so every run it clones is born inside (joining per run costs ms)."""
        with open(self.procs_file, "w") as f:
            f.write("0")

    def leave_and_remove(self) -> None:
        _try_write(os.path.join(os.path.dirname(self.path), "cgroup.procs"), "0")
        try:
            os.rmdir(self.path)
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
                return cgroup
            os.rmdir(path)
        except OSError:
            continue
    return None


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
