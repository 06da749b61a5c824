"""Linux isolation primitives for sandboxed runs: namespaces, mounts, credentials, resource limits.

The zygote calls `prepare_zygote()` once: it enters an empty network namespace and a private mount namespace
in which secrets are masked and the whole file system is read-only. Each run is then `clone()`d straight
into fresh PID, mount, IPC and UTS namespaces (so the run is PID 1 of its own PID namespace and killing it kills every
process it started), mounts its own /proc and a size-capped tmpfs scratch dir, drops to an unprivileged
uid of its own (or, when the worker is not root, drops every capability inside a user namespace), and sets
rlimits. Python 3.11 has no `os.unshare`, hence ctypes.
"""

from __future__ import annotations

import ctypes
import gc
import os
import resource
import signal
import sys
from collections.abc import Callable
from typing import NamedTuple, NoReturn

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
# A fresh network namespace costs ~1.4 ms of CPU per run here (most of a run's isolation cost), so each
# zygote enters an empty one once (only a downed loopback: no network at all) and its runs share it. Runs of
# one slot never overlap and no process outlives its run, so nothing (not even an abstract unix socket)
# passes from one run to the next; runs of different slots are in different network namespaces.
# The UTS namespace is the zygote's too: runs cannot set the hostname (no CAP_SYS_ADMIN). So is the IPC
# namespace, in root mode, where the zygote sets its limits to zero and runs (unprivileged host uids) cannot
# raise them: no System V or POSIX IPC object can be created in it at all, so none outlives a run to reach the
# next one, and runs skip an IPC namespace's setup and teardown (~1% of a HumanEval program's CPU). Rootless,
# or where the limits cannot be set, each run gets an IPC namespace of its own.
RUN_NAMESPACES = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC
IPC_LIMITS = {"/proc/sys/kernel/msgmni": "0", "/proc/sys/kernel/shmmni": "0", "/proc/sys/kernel/sem": "0 0 0 0",
              "/proc/sys/fs/mqueue/queues_max": "0"}

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE = 4096, 8192, 16384, 1 << 18
AT_FDCWD, AT_RECURSIVE = -100, 0x8000
MNT_DETACH = 2
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID = 0x1, 0x2
SYS_CLONE = {"x86_64": 56, "aarch64": 220}
SYS_MOUNT_SETATTR = 442
PR_SET_PDEATHSIG, PR_SET_NAME, PR_SET_NO_NEW_PRIVS = 1, 15, 38
SCRATCH_DIR = "/tmp"

_libc = ctypes.CDLL(None, use_errno=True)
# PyDLL keeps the GIL held across the call: clone() must not run with the GIL released.
_libc_gil = ctypes.PyDLL(None, use_errno=True)
# Looked up once here: a lookup in each cloned run walks libpython's symbol table in fresh pages (~50 faults).
_after_fork_child = ctypes.pythonapi.PyOS_AfterFork_Child


class IsolationUnavailable(RuntimeError):
    """The kernel refused a namespace or mount the sandbox needs; the worker must not start."""


class RunLimits(NamedTuple):
    """Resource limits applied to one sandboxed run (all processes it starts). A NamedTuple, not a dataclass:
    this module is imported by the forker, and `dataclasses` (with `inspect`) would add ~1 MB to every run."""

    memory_mb: int
    cpu_s: int
    max_processes: int
    max_open_files: int
    max_file_bytes: int


def set_process_name(name: str) -> None:
    """The name `ps`, `top` and `perf` show (at most 15 bytes): an operator tells the zygote, its forker and
    the runs apart at a glance instead of seeing a dozen identical `python3` lines."""
    _libc.prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def _enc(text: str | None) -> bytes | None:
    return None if text is None else text.encode()


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = _enc
    _check(_libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
           f"mount {target}")


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def make_tree_readonly(path: str) -> None:
    """mount_setattr(AT_RECURSIVE): every mount under `path` read-only and nosuid, in one call."""
    attr = _MountAttr(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0, 0, 0)
    _check(_libc.syscall(ctypes.c_long(SYS_MOUNT_SETATTR), ctypes.c_int(AT_FDCWD), path.encode(),
                         ctypes.c_uint(AT_RECURSIVE), ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr))),
           "mount_setattr")


def set_mount_writable(path: str) -> None:
    attr = _MountAttr(0, MOUNT_ATTR_RDONLY, 0, 0)
    _check(_libc.syscall(ctypes.c_long(SYS_MOUNT_SETATTR), ctypes.c_int(AT_FDCWD), path.encode(),
                         ctypes.c_uint(0), ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr))),
           f"mount_setattr {path}")


def _write(path: str, text: str) -> None:
    """One write(2), without Python's buffered text layer: a run pays for every page it first touches."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def warm_up() -> None:
    """Resolves, in the forker, the libc functions every run calls: ctypes looks a function up on first use
    and caches it on the library object, so each run would otherwise repeat the lookup in fresh pages."""
    for name in ("mount", "prctl", "syscall", "capset"):
        getattr(_libc, name)


def _uid_mapped(uid: int) -> bool:
    with open("/proc/self/uid_map") as f:
        for line in f:
            inside, _, count = (int(x) for x in line.split())
            if inside <= uid < inside + count:
                return True
    return False


def prepare_zygote(hidden_paths: list[str], keep_paths: list[str], run_uid: int,
                   writable_mounts: tuple[str, ...] = ()) -> str:
    """Gives the zygote a private, read-only view of the file system; returns the mode.

    'root': runs switch to `run_uid`. 'userns' (not root, or a rootless container where `run_uid` does
    not exist): the zygote enters a user namespace of its own and runs drop every capability instead.
    """
    mode = "root" if os.geteuid() == 0 and _uid_mapped(run_uid) else "userns"
    uid, gid = os.geteuid(), os.getegid()
    try:
        unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC | (CLONE_NEWUSER if mode == "userns" else 0))
        if mode == "userns":
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"0 {uid} 1")
            _write("/proc/self/gid_map", f"0 {gid} 1")
        if mode == "root":
            # Only here: a userns run is uid 0 of the user namespace that owns this IPC namespace, and such
            # a uid may raise the limits again through its own /proc/sys (no capability needed).
            _close_ipc()  # before the tree, /proc with it, turns read-only
        mount(None, "/", None, MS_REC | MS_PRIVATE)
        mount("tmpfs", SCRATCH_DIR, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
        for index, hidden in enumerate(hidden_paths):
            _mask(hidden, [k for k in keep_paths if _is_under(k, hidden)], index)
        _minimal_dev()
        # The staging tmpfs is empty now (everything on it was moved into place). Unmounted, the host's /tmp
        # shows again, read-only: the forker, exec'd in this view, may live there (a clone of the repository
        # under /tmp); every run covers /tmp with a tmpfs of its own before its job arrives.
        _check(_libc.umount2(SCRATCH_DIR.encode(), ctypes.c_int(MNT_DETACH)), f"umount {SCRATCH_DIR}")
        make_tree_readonly("/")
        for point in writable_mounts:  # the slot's cgroup: root-owned files, useless to the run's uid
            set_mount_writable(point)
    except OSError as exc:
        raise IsolationUnavailable(
            f"sandbox isolation unavailable ({exc}); the sandbox needs mount namespaces and mount_setattr "
            "(Linux >= 5.12, root or unprivileged user namespaces); set ACECODER_SANDBOX_ISOLATION=none "
            "to run WITHOUT isolation (unsafe)") from exc
    return mode


def _close_ipc() -> None:
    """Zero IPC limits in the zygote's IPC namespace; then its runs share it (see RUN_NAMESPACES)."""
    global RUN_NAMESPACES
    try:
        for path, value in IPC_LIMITS.items():
            _write(path, value)
    except OSError:
        return  # runs keep an IPC namespace each
    RUN_NAMESPACES &= ~CLONE_NEWIPC


def _is_under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _mask(hidden: str, keep: list[str], index: int) -> None:
    """Covers `hidden` with an empty tmpfs, then re-exposes the `keep` paths under it (the Python install)."""
    if not os.path.isdir(hidden) or os.path.islink(hidden):
        return
    stage = []
    for n, path in enumerate(keep):
        spot = f"{SCRATCH_DIR}/stage-{index}-{n}"
        os.mkdir(spot)
        mount(path, spot, None, MS_BIND | MS_REC)
        stage.append((spot, path))
    mount("tmpfs", hidden, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    for spot, path in stage:
        os.makedirs(path, exist_ok=True)
        mount(spot, path, None, MS_MOVE)


DEV_NODES = ("null", "zero", "full", "random", "urandom")


def _minimal_dev() -> None:
    """Replaces /dev by a tmpfs holding only the harmless character devices (no disks, no consoles, no
    kvm), so even a run whose uid maps to the host's root (a rootless setup) cannot reach raw devices."""
    staged = []
    for name in DEV_NODES:
        source = f"/dev/{name}"
        if os.path.exists(source):
            spot = f"{SCRATCH_DIR}/dev-{name}"
            open(spot, "w").close()
            mount(source, spot, None, MS_BIND)
            staged.append((spot, name))
    mount("tmpfs", "/dev", "tmpfs", MS_NOSUID, "size=64k,mode=0755")
    for spot, name in staged:
        open(f"/dev/{name}", "w").close()
        mount(spot, f"/dev/{name}", None, MS_MOVE)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"/dev/{name}")


_SYS_CLONE_NR = SYS_CLONE.get(os.uname().machine, -1)


def clone_into_namespaces(child: Callable[[], NoReturn]) -> int:
    """clone(2) a child into fresh namespaces; the child runs `child()` and never returns here."""
    # Everything the zygote holds goes to the permanent generation: the child's garbage collector then
    # never walks (and copy-on-write faults in) the zygote's whole heap. It cost ~5 ms per run.
    gc.freeze()
    pid = _libc_gil.syscall(ctypes.c_long(_SYS_CLONE_NR), ctypes.c_ulong(RUN_NAMESPACES | signal.SIGCHLD),
                            ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))
    if pid == 0:
        _after_fork_child()
        try:
            child()
        finally:
            os._exit(70)
    return _check(pid, "clone")


def fork_plain(child: Callable[[], NoReturn]) -> int:
    """The unisolated fallback an operator opted into: a plain fork (the child starts its own session)."""
    gc.freeze()
    pid = os.fork()
    if pid == 0:
        try:
            child()
        finally:
            os._exit(70)
    return pid


def isolate(uid: int, mode: str, scratch_mb: int) -> None:
    """Inside the cloned child, before its job arrives: own /proc and scratch, then no privileges at all."""
    if mode != "none":
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        _write("/proc/self/oom_score_adj", "1000")  # under memory pressure, the run dies first
        owner = uid if mode == "root" else 0
        mount("tmpfs", SCRATCH_DIR, "tmpfs", MS_NOSUID | MS_NODEV,
              f"size={scratch_mb}m,mode=0700,uid={owner},gid={owner}")
        os.chdir(SCRATCH_DIR)
    if mode == "root":
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    elif mode == "userns":
        drop_capabilities()
    _forget_keys()
    _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    # After the credential change: the run dies with the zygote instead of outliving it.
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


KEYCTL_JOIN_SESSION_KEYRING, KEYCTL_CLEAR = 1, 7
KEY_SPEC_USER_KEYRING, KEY_SPEC_USER_SESSION_KEYRING = -4, -5
SYS_KEYCTL = {"x86_64": 250, "aarch64": 219}


def _forget_keys() -> None:
    """Kernel keyrings outlive processes and belong to the uid: empty the slot uid's keyrings and start a
    fresh session keyring, so nothing a previous run stored there reaches this one."""
    nr = SYS_KEYCTL[os.uname().machine]
    _libc.syscall(ctypes.c_long(nr), ctypes.c_int(KEYCTL_JOIN_SESSION_KEYRING), ctypes.c_void_p(0))
    for ring in (KEY_SPEC_USER_KEYRING, KEY_SPEC_USER_SESSION_KEYRING):
        _libc.syscall(ctypes.c_long(nr), ctypes.c_int(KEYCTL_CLEAR), ctypes.c_int(ring))


def apply_limits(limits: RunLimits) -> None:
    """The job's rlimits; only ever lowered, which an unprivileged process may do."""
    _set_rlimits(limits)


def _set_rlimits(limits: RunLimits) -> None:
    mem = limits.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits.max_processes, limits.max_processes))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits.max_open_files, limits.max_open_files))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.max_file_bytes, limits.max_file_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_capabilities() -> None:
    """capset() to nothing: the user-namespace root keeps its uid but loses every privilege."""
    for cap in range(64):  # the bounding set, so nothing can come back through exec
        _libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP
    header = _CapHeader(0x20080522, 0)
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def python_install_paths() -> list[str]:
    """What the sandboxed interpreter must still read when secrets are masked."""
    # This package too: the forker is started (and imports it) inside the masked view.
    here = os.path.dirname(os.path.abspath(__file__))
    paths = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, here)}
    paths |= {os.path.realpath(p) for p in sys.path if p and os.path.isdir(p)}
    # Keep only outermost paths: a nested one is re-exposed with its parent.
    return sorted(p for p in paths if not any(q != p and _is_under(p, q) for q in paths))
