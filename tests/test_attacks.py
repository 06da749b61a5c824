"""The threat model (docs/design.md, "Threat model"), attack by attack, through the HTTP API.

Each case asserts the exact verdicts; every case also sends an honest item in the same request, which must
still pass (items are judged independently), and the service must stay healthy afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, Gateway, score

FAST = {"test_timeout_s": 1.0, "program_timeout_s": 4.0}
SMALL_MEMORY = {"unbounded recursion with the limit lifted", "memory bomb", "memory bomb over children"}
HONEST = {"response": "def inc(x):\n    return x + 1\n", "tests": ["assert inc(1) == 2", "assert inc(-1) == 0"]}

# name -> (program, tests, expected outcomes, expected program status or "any")
ATTACKS: dict[str, tuple[str, list[str], list[str], str]] = {
    "infinite loop": ("def f(x):\n    while True:\n        pass\n", ["assert f(1) == 1", "assert f(2) == 2"],
                      ["timeout", "timeout"], "timeout"),
    "sleep": ("import time\ndef f(x):\n    time.sleep(100)\n", ["assert f(1) is None"], ["timeout"], "timeout"),
    "ignored signals": (
        "import signal, time\nfor s in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM, signal.SIGXCPU):\n"
        "    signal.signal(s, signal.SIG_IGN)\nsignal.pthread_sigmask(signal.SIG_BLOCK, range(1, 32))\n"
        "def f(x):\n    while True:\n        pass\n", ["assert f(1) == 1"], ["timeout"], "timeout"),
    "C call ignoring Python signals": (
        "import ctypes\ndef f(x):\n    ctypes.CDLL(None).sleep(100)\n", ["assert f(1) == 0"], ["timeout"], "timeout"),
    "catastrophic regex in C": (
        "import re\ndef f(x):\n    return re.match(r'(a+)+$', 'a' * 64 + 'b')\n", ["assert f(1) is None"],
        ["timeout"], "timeout"),
    "deep recursion": ("def f(x):\n    return f(x + 1)\n", ["assert f(1) == 1"], ["error"], "ok"),
    "unbounded recursion with the limit lifted": (
        "import sys\nsys.setrecursionlimit(10**8)\ndef f(x):\n    pad = list(range(10000))\n    return f(x + 1)\n",
        ["assert f(1) == 1", "assert f(0) == 0"], ["error", "error"], "any"),  # CPython may raise SystemError
    "segfault via ctypes": (
        "import ctypes\ndef f(x):\n    return ctypes.string_at(0)\ndef g(x):\n    return x\n",
        ["assert f(1) == 1", "assert g(2) == 2"], ["error", "pass"], "crashed"),
    "fork bomb": (
        "import os\ndef f(x):\n    while True:\n        try:\n            os.fork()\n        except OSError:\n"
        "            pass\ndef g(x):\n    return x\n", ["assert f(1) == 1", "assert g(3) == 3"],
        ["timeout", "pass"], "timeout"),
    "memory bomb": ("def f(x):\n    return len(bytearray(8 * 1024**3))\n", ["assert f(1) == 1"],
                    ["error"], "memory_exceeded"),
    "memory bomb over children": (  # the run's memory cgroup holds them all to one limit: one child fits
        "import os, time\ndef f(x):\n    pids = []\n    for _ in range(6):\n        pid = os.fork()\n        if pid == 0:\n"
        "            b = bytearray(200 * 1024**2)\n            time.sleep(30)\n            os._exit(0)\n        pids.append(pid)\n"
        "    time.sleep(2)\n    return sum(os.waitpid(p, os.WNOHANG) == (0, 0) for p in pids)\n",
        ["assert f(1) <= 1"], ["pass"], "memory_exceeded"),
    "stdout flood": ("import sys\ndef f(x):\n    while True:\n        sys.stdout.write('x' * 65536)\n",
                     ["assert f(1) == 1"], ["error"], "output_exceeded"),
    "stderr flood": ("import os\ndef f(x):\n    while True:\n        os.write(2, b'e' * 65536)\n",
                     ["assert f(1) == 1"], ["error"], "output_exceeded"),
    "output just under the cap": (  # streams through the pipe: the watcher must keep reading a busy pipe
        "import sys\ndef f(x):\n    for _ in range(48):\n        sys.stdout.write('y' * 65536)\n    return x\n",
        ["assert f(1) == 1", "assert f(2) == 2"], ["pass", "pass"], "ok"),
    "output cap crossed by the second test": (  # the blame goes to the test that was running, not the one before
        "import sys\ndef f(x):\n    sys.stdout.write('z' * [6553600, 2621440, 0][x])\n    sys.stdout.flush()\n"
        "    return x\n", ["assert f(0) == 0", "assert f(1) == 1", "assert f(2) == 2"], ["pass", "error", "pass"],
        "output_exceeded"),
    "closing the result pipe mid-run": (
        "import os\ndef f(x):\n    os.close(3)\n    return x\ndef g(x):\n    return x\n",
        ["assert f(1) == 1", "assert g(1) == 1"], ["error", "pass"], "exited"),
    "disk filling": (
        "def f(x):\n    with open('big', 'wb') as fh:\n        while True:\n            fh.write(b'0' * 1048576)\n",
        ["assert f(1) == 1"], ["error"], "ok"),
    "fd exhaustion": ("def f(x):\n    return [open('/dev/null') for _ in range(100000)]\n",
                      ["assert f(1) == 1"], ["error"], "ok"),
    "waiting on stdin": ("def f(x):\n    return input()\n", ["assert f(1) == '1'"], ["error"], "ok"),
    "sys.exit(0) at load": ("import sys\nsys.exit(0)\ndef f(x):\n    return x\n", ["assert f(1) == 1"],
                            ["error"], "runtime_error"),
    "os._exit(0) at load": ("import os\nos._exit(0)\ndef f(x):\n    return x\n", ["assert f(1) == 1"],
                            ["error"], "exited"),
    "os._exit(0) inside a test": ("import os\ndef f(x):\n    os._exit(0)\ndef g(x):\n    return x\n",
                                  ["assert f(1) == 1", "assert g(1) == 1"], ["error", "pass"], "exited"),
    "raising SystemExit / KeyboardInterrupt / BaseException": (
        "def f(x):\n    raise [SystemExit(0), KeyboardInterrupt(), BaseException('b')][x]\n",
        ["assert f(0) == 1", "assert f(1) == 1", "assert f(2) == 1"], ["error", "error", "error"], "ok"),
    "atexit hook rewriting the exit code": (
        "import atexit, os\natexit.register(lambda: os._exit(0))\ndef f(x):\n    raise SystemExit(0)\n",
        ["assert f(1) == 2"], ["error"], "ok"),
    "fake result lines": (
        "print('PASSED ALL TESTS'); print(json.dumps({'ev': 'done'}))\nimport json\n"
        "def f(x):\n    print('{\"outcome\": \"pass\"}')\n    return 0\n", ["assert f(1) == 5"], ["error"],
        "runtime_error"),
    "writing forged frames to the result fd": (
        "import os, json, struct\ndef frame(o):\n    b = json.dumps(o).encode()\n    os.write(3, struct.pack('>I', len(b)) + b)\n"
        "def f(x):\n    frame({'ev': 'end', 'i': 0}); frame({'ev': 'done'}); os._exit(0)\n",
        ["assert f(1) == 42", "assert f(2) == 43"], ["error", "not_run"], "ok"),
    "writing to every other inherited fd": (
        "import os\ndef f(x):\n    n = 0\n    for fd in range(4, 1024):\n        try:\n            os.write(fd, b'pass')\n"
        "            n += 1\n        except OSError:\n            pass\n    return n\n", ["assert f(1) == 0"], ["pass"], "ok"),
    "__eq__ always true": (
        "class Yes:\n    def __eq__(self, other):\n        return True\n    __hash__ = None\n"
        "def f(x):\n    return Yes()\n", ["assert f(1) == 5", "assert f(1) == [1, 2]", "assert not f(1)"],
        ["fail", "fail", "fail"], "ok"),  # truthiness is Python's: the object is truthy
    "int, str and list subclasses": (
        "class I(int):\n    def __eq__(self, o):\n        return True\nclass L(list):\n    def __eq__(self, o):\n"
        "        return True\nclass S(str):\n    def __eq__(self, o):\n        return True\n"
        "def f(x):\n    return [I(0), L(), S('')][x]\n", ["assert f(0) == 5", "assert f(1) == [1]", "assert f(2) == 'a'"],
        ["fail", "fail", "fail"], "ok"),
    "walking caller frames for the expected value": (
        "import sys, gc\ndef f(x):\n    seen = []\n    fr = sys._getframe(1)\n    while fr:\n"
        "        seen += [c for c in fr.f_code.co_consts if isinstance(c, str)]\n"
        "        seen += [v for v in fr.f_locals.values() if isinstance(v, str)]\n        fr = fr.f_back\n"
        "    seen += [o for o in gc.get_objects() if isinstance(o, str)]\n"
        "    hits = [s for s in seen if s.startswith('EXPECTED-')]\n    return hits[0] if hits else 'nothing'\n",
        ["assert f(1) == 'EXPECTED-7f3a'"], ["fail"], "ok"),
    "reading own memory for the expected value": (
        "import re\ndef f(x):\n    found = b''\n    with open('/proc/self/maps') as maps, open('/proc/self/mem', 'rb') as mem:\n"
        "        for line in maps:\n            lo, hi = (int(v, 16) for v in line.split()[0].split('-'))\n"
        "            if 'r' not in line.split()[1]:\n                continue\n            try:\n"
        "                mem.seek(lo); chunk = mem.read(hi - lo)\n            except (OSError, OverflowError, ValueError):\n"
        "                continue\n            m = re.search(rb'EXPECTED-[0-9a-f]{4}', chunk)\n"
        "            if m and m.group() != b'EXPECTED-' + b'0000':\n                found = m.group()\n"
        "    return found.decode()\n", ["assert f(1) == 'EXPECTED-9b1c'"], ["error"], "ok"),  # /proc/self/mem: EACCES
    "monkeypatching builtins and stdlib used by checks": (
        "import builtins, math, operator\nbuiltins.abs = lambda v: 0\nbuiltins.len = lambda v: 3\n"
        "math.isclose = lambda *a, **k: True\noperator.eq = lambda a, b: True\n"
        "def f(x):\n    return 99.0\n",
        ["assert abs(f(1) - 0.5) < 1e-06", "assert math.isclose(f(1), 0.5)", "assert len(f(1)) == 3"],
        ["fail", "fail", "error"], "ok"),
    "tampering with the harness through gc": (  # the zygote's objects are frozen out of gc's view
        "import gc, sys\ndef f(x):\n    for o in gc.get_objects():\n        if isinstance(o, dict) and 'send' in o and 'encode' in o:\n"
        "            o['encode'] = lambda v: {'i': '5'}\n    return 0\n", ["assert f(1) == 5", "assert f(2) == 6"],
        ["fail", "fail"], "ok"),
    "tampering with the harness through sys.modules": (  # can forge reports, never a hidden expected value
        "import sys\nrunner = sys.modules['acecoder_reward.sandbox_worker.runner']\nreal = runner.send\n"
        "def fake(frame, flush=True):\n    if frame.get('ev') == 'hole':\n        frame = {'ev': 'hole', 'i': frame['i'], 'j': 0, 'v': {'i': '7'}}\n"
        "    real(frame, flush)\nrunner.send = fake\ndef f(x):\n    return 0\n",
        ["assert f(1) == 5", "assert f(2) == 6"], ["fail", "fail"], "ok"),
    "network access": (
        "import socket\ndef f(x):\n    socket.create_connection(('127.0.0.1', 6379), timeout=1)\n    return 1\n",
        ["assert f(1) == 1"], ["error"], "ok"),
    "result with too many parts": ("def f(x):\n    return list(range(300000))\n", ["assert f(1) == [0]"], ["error"], "ok"),
    "result of too many bytes": ("def f(x):\n    return 'x' * (40 * 1024 * 1024)\n", ["assert f(1) == 'x'"], ["error"],
                                 "output_exceeded"),
    "cyclic result": ("def f(x):\n    a = []\n    a.append(a)\n    return a\n", ["assert f(1) == []"], ["error"], "ok"),
    "killing the parent and every visible process": (
        "import os, signal\ndef f(x):\n    for pid in (os.getppid(), -1):\n        try:\n            os.kill(pid, signal.SIGKILL)\n"
        "        except OSError:\n            pass\n    return x\n", ["assert f(1) == 1"], ["pass"], "ok"),
}


def _slots(client: httpx.Client) -> int:
    """The gateway's zygotes. Sequential requests take them in turn (the idle queue is FIFO), so this many
    requests in a row reach every slot, whatever the machine's CPU count made the pool."""
    slots = _slots_live(client)
    assert slots > 0
    return slots


def _slots_live(client: httpx.Client) -> int:
    return int(client.get("/health").json().get("zygotes", 0))


def _assert_root(why: str) -> None:
    assert os.geteuid() == 0, f"this test needs root: {why}; as another user it would pass without checking"


def _host_state() -> tuple[list[tuple[str, int, int]], list[str]]:
    """The repo's files (path, size, mtime) and any file a sandbox uid owns in the host's writable dirs."""
    _assert_root("runs get their own uids (>= 200000) only when the gateway is root")
    repo = []
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        for name in files:
            st = os.stat(os.path.join(root, name))
            repo.append((os.path.join(root, name), st.st_size, st.st_mtime_ns))
    repo.sort()
    foreign = [str(p) for d in ("/tmp", "/var/tmp", "/dev/shm") if os.path.isdir(d)
               for p in Path(d).iterdir() if _owner(p) >= 200000]
    return repo, foreign


def _owner(path: Path) -> int:
    try:
        return path.lstat().st_uid
    except OSError:
        return -1


SKIP_DIRS = {".venv", ".git", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis",
             "results"}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_is_contained(client: httpx.Client, name: str) -> None:
    before = _host_state()
    program, tests, outcomes, status = ATTACKS[name]
    limits = {**FAST, "memory_mb": 256} if name in SMALL_MEMORY else FAST  # reach the limit well within 1 s
    if name in {"memory bomb over children", "unbounded recursion with the limit lifted"}:
        # Filling 256 MB is slow on a loaded CI machine: the verdict under test is the error, not the
        # deadline.
        limits = {**limits, "test_timeout_s": 6.0, "program_timeout_s": 8.0}
    answer = client.post("/v1/rewards", json={"items": [{"response": program, "tests": tests}, HONEST],
                                              "limits": limits})
    assert answer.status_code == 200, answer.text
    hostile, honest = answer.json()["items"]
    assert hostile["tests"]["outcomes"] == outcomes, hostile
    assert status == "any" or hostile["tests"]["status"] == status, hostile
    assert honest["tests"]["outcomes"] == ["pass", "pass"], honest
    assert client.get("/health").status_code == 200
    assert _host_state() == before  # nothing outside the run's scratch dir changed


def _observe(client: httpx.Client, body: str) -> dict:
    """Runs `body` (which fills `seen`) in the sandbox and returns `seen`, smuggled out through an error."""
    program = "import os, json\ndef probe():\n    seen = {}\n" + textwrap.indent(textwrap.dedent(body), "    ") + \
              "\n    raise RuntimeError('SEEN' + json.dumps(seen))\n"
    result = score(client, program, ["assert probe() == 1"], limits=FAST)
    detail = result["tests"]["details"][0]
    assert detail.startswith("RuntimeError: SEEN"), result
    return json.loads(detail[len("RuntimeError: SEEN"):])


def test_no_secrets_in_the_environment_or_other_processes(client: httpx.Client) -> None:
    seen = _observe(client, """
        seen['env'] = sorted(os.environ)
        try:
            seen['leak'] = 's3cret' in open('/proc/self/environ', 'rb').read().decode('latin1')
        except PermissionError:
            seen['leak'] = False  # not even readable: the run is not dumpable after dropping to its uid
        seen['pids'] = sorted(p for p in os.listdir('/proc') if p.isdigit())
        seen['uid'] = os.getuid()
        seen['root'] = os.listdir('/root')
    """)
    assert not seen["leak"]
    assert not [k for k in seen["env"] if "TOKEN" in k or k.startswith("ACECODER")]
    assert seen["pids"] == ["1"]  # alone in its PID namespace
    assert seen["uid"] != 0
    assert seen["root"] == [] or all(name == ".pyenv" for name in seen["root"])  # only the Python install


def test_file_system_is_read_only_outside_scratch(client: httpx.Client, tmp_path: Path) -> None:
    canary = tmp_path / "canary.txt"
    canary.write_text("untouched")
    os.chmod(tmp_path, 0o777)
    os.chmod(canary, 0o666)
    repo_file = Path(__file__)
    before = repo_file.read_bytes()
    seen = _observe(client, f"""
        for target in ({str(canary)!r}, {str(repo_file)!r}, '/etc/passwd', '/usr/x'):
            try:
                open(target, 'a').write('pwned')
                seen[target] = 'written'
            except OSError as exc:
                seen[target] = type(exc).__name__
        try:
            os.remove({str(canary)!r})
            seen['remove'] = 'removed'
        except OSError as exc:
            seen['remove'] = type(exc).__name__
        open('scratch.txt', 'w').write('ok')
        seen['scratch'] = open('scratch.txt').read()
        seen['cwd'] = os.getcwd()
    """)
    assert "written" not in seen.values() and seen["remove"] != "removed", seen
    assert seen["scratch"] == "ok"
    assert canary.read_text() == "untouched"
    assert repo_file.read_bytes() == before


def test_nothing_persists_between_runs(client: httpx.Client) -> None:
    first = _observe(client, "open('persist.txt', 'w').write('x')\nseen['cwd_files'] = os.listdir('.')")
    assert first["cwd_files"] == ["persist.txt"]
    second = _observe(client, "seen['cwd_files'] = os.listdir('.')\nseen['tmp'] = os.listdir('/tmp')")
    assert second == {"cwd_files": [], "tmp": []}


def test_shadowing_stdlib_modules_from_the_cwd_does_nothing(client: httpx.Client) -> None:
    seen = _observe(client, """
        open('textwrap.py', 'w').write('FAKE = True')
        open('json.py', 'w').write('FAKE = True')
        import textwrap, importlib
        seen['textwrap_fake'] = hasattr(textwrap, 'FAKE')
        seen['json_fake'] = hasattr(importlib.import_module('json'), 'FAKE')
    """)
    assert seen == {"textwrap_fake": False, "json_fake": False}


def test_no_network_at_all(client: httpx.Client) -> None:
    seen = _observe(client, """
        import socket
        seen['ifaces'] = [name for _, name in socket.if_nameindex()]
        for host in ('127.0.0.1', '1.1.1.1'):
            try:
                socket.create_connection((host, 6379), timeout=1)
                seen[host] = 'connected'
            except OSError as exc:
                seen[host] = type(exc).__name__
    """)
    assert seen["ifaces"] == ["lo"]
    assert "connected" not in seen.values()


def _leftover_run_processes() -> list[int]:
    """Processes of sandbox uids other than a run's PID 1 (each slot keeps one spare run waiting for its job)."""
    _assert_root("runs are found by their uids (>= 200000), which they get only when the gateway is root")
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            uid = int(fields["Uid"].split()[1])
            pid_in_run = fields["NSpid"].split()[-1]
            if uid >= 200000 and pid_in_run != "1":
                pids.append(int(entry))
    return pids


def test_daemon_grandchildren_and_threads_do_not_outlive_the_run(client: httpx.Client) -> None:
    program = ("import os, threading, time\ndef f(x):\n    if os.fork() == 0:\n        os.setsid()\n"
               "        if os.fork() == 0:\n            while True:\n                time.sleep(1)\n        os._exit(0)\n"
               "    threading.Thread(target=lambda: time.sleep(1000), daemon=False).start()\n    return x\n")
    result = score(client, program, ["assert f(1) == 1"], limits=FAST)
    assert result["tests"]["outcomes"] == ["pass"]
    deadline = time.monotonic() + 5  # the finished run is reaped just after its report goes out
    while _leftover_run_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _leftover_run_processes() == []


def test_missing_dependency_is_a_per_test_error_with_the_reason(client: httpx.Client) -> None:
    program = "def f(x):\n    import numpy\n    return x\ndef g(x):\n    import surely_not_installed_pkg\n    return x\n"
    result = score(client, program, ["assert f(1) == 1", "assert g(1) == 1"])
    assert result["tests"]["outcomes"] == ["error", "error"]
    assert all(d.startswith("missing dependency") for d in result["tests"]["details"]), result
    assert "numpy" in result["tests"]["details"][0]


LISTEN = ("import socket, time\ndef f(x):\n    s = socket.socket(socket.AF_UNIX)\n    s.bind('\\0acecoder-leak')\n"
          "    s.listen()\n    time.sleep(x)\n    return 1\n")
CONNECT = ("import socket, time\ndef f(x):\n    time.sleep(x)\n    s = socket.socket(socket.AF_UNIX)\n    try:\n"
           "        s.connect('\\0acecoder-leak')\n        return 'connected'\n    except OSError as exc:\n"
           "        return type(exc).__name__\n")


def test_runs_cannot_talk_through_abstract_unix_sockets(client: httpx.Client) -> None:
    """Concurrent runs are in different network namespaces; a later run finds nothing an earlier one left."""
    together = client.post("/v1/rewards", json={"items": [
        {"response": LISTEN, "tests": ["assert f(1.5) == 1"]},
        {"response": CONNECT, "tests": ["assert f(0.5) == 'ConnectionRefusedError'"]}]}).json()
    assert together["rewards"] == [1.0, 1.0], together
    slots = _slots(client)
    for _ in range(slots):  # one per slot
        assert score(client, LISTEN, ["assert f(0) == 1"])["reward"] == 1.0
    for _ in range(2 * slots):
        assert score(client, CONNECT, ["assert f(0) == 'ConnectionRefusedError'"])["reward"] == 1.0


def test_host_unix_sockets_are_out_of_reach(client: httpx.Client) -> None:
    """A read-only mount does not stop connect(): /run (where services keep sockets) is masked."""
    path = f"/run/acecoder-test-{os.getpid()}.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen()
    os.chmod(path, 0o777)
    try:
        program = ("import socket\ndef f(p):\n    s = socket.socket(socket.AF_UNIX)\n    try:\n        s.connect(p)\n"
                   "        return 'connected'\n    except OSError as exc:\n        return type(exc).__name__\n")
        result = score(client, program, [f"assert f({path!r}) == 'FileNotFoundError'"])
        assert result["tests"]["outcomes"] == ["pass"], result
    finally:
        server.close()
        os.unlink(path)


KEYCTL = ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
          "def add():\n    return libc.syscall(248, b'user', b'acecoder-probe', b'leak', 4, -4) > 0\n"
          "def find():\n    return libc.syscall(249, b'user', b'acecoder-probe', None, 0) > 0\n")


IPC = ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nKEY = 0x41434552\n"
       "LIMITS = {'kernel/msgmni': '32000', 'kernel/shmmni': '4096', 'kernel/sem': '32000 1024000000 500 32000',\n"
       "          'fs/mqueue/queues_max': '256'}\n"
       "def leave():\n    for name, value in LIMITS.items():  # first try to raise the limits back\n"
       "        try:\n            with open('/proc/sys/' + name, 'w') as f:\n                f.write(value)\n"
       "        except OSError:\n            pass\n"
       "    q = libc.msgget(KEY, 0o1666)\n    s = libc.shmget(KEY + 1, 4096, 0o1666)\n"
       "    m = libc.semget(KEY + 2, 1, 0o1666)\n    p = libc.mq_open(b'/acecoder', 0o102, 0o666, None)\n"
       "    return [q >= 0, s >= 0, m >= 0, p >= 0]\n"
       "def find():\n    return [libc.msgget(KEY, 0) >= 0, libc.shmget(KEY + 1, 0, 0) >= 0, libc.semget(KEY + 2, 0, 0) >= 0,\n"
       "            libc.mq_open(b'/acecoder', 2) >= 0]\n")


def test_ipc_objects_do_not_carry_data_between_runs(client: httpx.Client) -> None:
    """System V message queues, shared memory, semaphores and POSIX message queues outlive the process that
    made them; runs share their zygote's IPC namespace only where its limits are zero (nothing can be made
    there), else each has its own."""
    slots = _slots(client)
    for _ in range(slots):  # one per slot, whether or not the objects could be made
        assert score(client, IPC, ["assert len(leave()) == 4"])["reward"] == 1.0
    for _ in range(2 * slots):
        assert score(client, IPC, ["assert find() == [False, False, False, False]"])["reward"] == 1.0


def test_kernel_keyrings_do_not_carry_data_between_runs(client: httpx.Client) -> None:
    slots = _slots(client)
    for _ in range(slots):  # one per slot
        assert score(client, KEYCTL, ["assert add() == True"])["reward"] == 1.0
    for _ in range(2 * slots):
        assert score(client, KEYCTL, ["assert find() == False"])["reward"] == 1.0


def test_forged_deep_frames_error_the_item_and_the_slot_keeps_serving(client: httpx.Client) -> None:
    program = ("import os, struct\ndef raw(b):\n    os.write(3, struct.pack('>I', len(b)) + b)\n"
               "def f(depth):\n    raw(b'{\"ev\":\"hole\",\"i\":0,\"j\":0,\"v\":' + b'[' * depth + b']' * depth + b'}')\n"
               "    raw(b'{\"ev\":\"end\",\"i\":0}')\n    raw(b'{\"ev\":\"done\"}')\n    os._exit(0)\n")
    for depth in (982, 100_000, 982) * _slots(client):  # every slot takes each one
        result = score(client, program, [f"assert f({depth}) == 6"])
        assert result["tests"]["outcomes"] == ["error"], result
    assert score(client, HONEST["response"], HONEST["tests"])["reward"] == 1.0


def test_one_result_cap_for_the_whole_program(client: httpx.Client) -> None:
    program = "S = 'a' * 7_000_000\ndef f(x):\n    return S\n"
    result = score(client, program, [f"assert f({i}) == 0" for i in range(4)])
    assert result["tests"]["outcomes"] == ["fail", "fail", "error", "error"], result
    assert result["tests"]["status"] == "output_exceeded"


def test_lone_surrogates_from_the_candidate_do_not_break_the_response(client: httpx.Client) -> None:
    answer = client.post("/v1/rewards", json={"items": [
        {"response": "def f(x):\n    raise ValueError('\\ud800')\n", "tests": ["assert f(1) == 1"]}, HONEST]})
    assert answer.status_code == 200
    assert answer.json()["rewards"] == [0.0, 1.0]


def test_dataclasses_and_the_candidate_module_work(client: httpx.Client) -> None:
    program = ("from dataclasses import dataclass\n@dataclass\nclass P:\n    x: int\n    y: int\n"
               "def f(a):\n    return P(a, a).x + P(1, 2).y\n")
    assert score(client, program, ["assert f(1) == 3"])["reward"] == 1.0


def test_expected_sides_computed_by_candidate_code_are_judged_outside_or_flagged(client: httpx.Client) -> None:
    """Patching math changes nothing (the judge's math is its own); a look-alike helper the candidate defines
    makes its test forgeable, so it is flagged and, by default, excluded from the reward."""
    program = ("import math\nmath.factorial = lambda n: 0\nmath.tau = 0\nclass Point:\n    def __new__(cls, *a):\n"
               "        return 0\ndef f(*a):\n    return 0\n")
    tests = ["assert f(5) == math.factorial(5)", "assert f(3) == Point(1, 2)", "assert f(1) == math.tau",
             "assert f(4) == 24"]
    result = score(client, program, tests)
    assert result["tests"]["judged_in_sandbox"] == [1]
    assert [result["tests"]["outcomes"][i] for i in (0, 2, 3)] == ["fail", "fail", "fail"]
    assert result["reward"] == 0.0


def test_standard_library_results_are_judged_as_python_would(client: httpx.Client) -> None:
    program = ("import collections, fractions, itertools\nfrom collections import namedtuple\nP = namedtuple('P', 'x y')\n"
               "def counts(s):\n    return collections.Counter(s)\ndef gen(n):\n    yield from range(n)\n"
               "def pt():\n    return P(1, 2)\ndef half():\n    return fractions.Fraction(1, 2)\n"
               "def keys():\n    return {'a': 1}.keys()\ndef dq():\n    return collections.deque([1, 2])\n")
    tests = ["assert counts('aab') == {'a': 2, 'b': 1}", "assert list(gen(3)) == [0, 1, 2]", "assert sum(gen(4)) == 6",
             "assert pt() == (1, 2)", "assert half() == 0.5", "assert keys() == {'a'}", "assert list(dq()) == [1, 2]",
             "assert gen(2) == [0, 1]", "assert dq() == [1, 2]"]
    result = score(client, program, tests)
    assert result["tests"]["outcomes"] == ["pass"] * 7 + ["fail", "fail"], result


def test_a_dead_zygote_is_replaced_and_no_request_fails(gateway: Gateway, client: httpx.Client) -> None:
    """Zygotes never die from a candidate, but if one is killed from outside, the pool replaces it."""
    assert gateway.proc is not None
    children = Path(f"/proc/{gateway.proc.pid}/task/{gateway.proc.pid}/children").read_text().split()
    zygotes = [int(pid) for pid in children if "acecoder_reward.sandbox_worker.zygote" in Path(f"/proc/{pid}/cmdline").read_text()]
    assert len(zygotes) == _slots(client)
    os.kill(zygotes[0], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _slots_live(client) == len(zygotes):  # until the gateway has seen it die
        assert time.monotonic() < deadline, "the gateway never noticed its zygote died"
        time.sleep(0.05)
    for _ in range(len(zygotes) + 1):  # the dead slot's turn comes within one round
        assert score(client, HONEST["response"], HONEST["tests"])["reward"] == 1.0
    assert client.get("/health").json()["zygotes"] == len(zygotes)


SCAN = ("import ctypes, re\ndef f(pattern):\n    needle = re.compile(pattern.encode())\n    with open('/proc/self/maps') as maps:\n"
        "        for line in maps:\n            parts = line.split()\n"
        "            if 'r' not in parts[1] or len(parts) > 5 and (parts[5].startswith('/') or parts[5].startswith('[v')):\n"
        "                continue\n            lo, hi = (int(x, 16) for x in parts[0].split('-'))\n"
        "            if needle.search(ctypes.string_at(lo, hi - lo)):\n                return True\n    return False\n")


def test_a_run_cannot_read_the_previous_job_from_memory(client: httpx.Client) -> None:
    """Runs are cloned from a forker that never sees jobs: nothing of an earlier job is in a run's memory."""
    victim = "def secret(x):\n    return 'VICTIM' + 'OUTPUT' + x\n"
    slots = _slots(client)
    for _ in range(slots):  # one per slot
        score(client, victim, ["assert secret('VICTIM' + 'INPUT') == 'x'"])
    # Regexes whose own text differs from what they find: the victim's result, code and test input.
    for pattern in (r"VICTI[M]OUTPU[T]", r"def secre[t]", r"'VICTI[M]' \+ 'INPU[T]'"):
        for _ in range(slots):
            result = score(client, SCAN, [f"assert f({pattern!r}) == False"])
            assert result["tests"]["outcomes"] == ["pass"], (pattern, result)
