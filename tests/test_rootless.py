"""The sandbox where the worker is not the host's root: in a user namespace, runs drop every capability
instead of switching uid (mode "userns", as in a rootless container). The same attacks stay contained."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loadtest.gateway_process import REPO, Gateway, free_port, stop_gateway, wait_healthy
from tests.conftest import score
from tests.test_attacks import ATTACKS, FAST, HONEST, IPC

pytestmark = pytest.mark.skipif(shutil.which("unshare") is None, reason="util-linux unshare not installed")

# The fork bomb is held by the slot's pids cgroup here: this test's user namespace maps to the host's root,
# and the kernel never applies RLIMIT_NPROC to processes whose host uid is root.
CASES = ["infinite loop", "ignored signals", "segfault via ctypes", "fork bomb", "memory bomb", "stdout flood",
         "disk filling", "os._exit(0) inside a test", "__eq__ always true", "network access",
         "killing the parent and every visible process"]


@pytest.fixture(scope="module")
def rootless(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    port = free_port()
    log = tmp_path_factory.mktemp("rootless") / "gateway.log"
    env = {"PATH": "/usr/bin:/bin", "ACECODER_PORT": str(port), "ACECODER_LOG_LEVEL": "info"}
    proc = subprocess.Popen(["unshare", "--user", "--map-root-user", sys.executable, "-m", "acecoder_reward.service.cli", "serve"],
                            cwd=REPO, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    gateway = Gateway(f"http://127.0.0.1:{port}", proc, log)
    try:
        wait_healthy(gateway)
        assert "isolation=userns" in gateway.log()
        with gateway.client() as client:
            yield client
    finally:
        stop_gateway(gateway)


@pytest.mark.parametrize("name", CASES)
def test_attack_is_contained_without_host_root(rootless: httpx.Client, name: str) -> None:
    program, tests, outcomes, status = ATTACKS[name]
    limits = {**FAST, "memory_mb": 256} if name == "memory bomb" else FAST
    body = rootless.post("/v1/rewards", json={"items": [{"response": program, "tests": tests}, HONEST],
                                              "limits": limits}).json()
    hostile, honest = body["items"]
    assert hostile["tests"]["outcomes"] == outcomes, hostile
    assert hostile["tests"]["status"] == status, hostile
    assert honest["tests"]["outcomes"] == ["pass", "pass"]


def test_file_system_and_devices_out_of_reach_without_host_root(rootless: httpx.Client, tmp_path: Path) -> None:
    canary = tmp_path / "canary.txt"
    canary.write_text("untouched")
    program = ("import os\ndef f():\n    seen = []\n"
               f"    for target in ({str(canary)!r}, '/etc/hostname', '/dev/vda', '/dev/kmsg'):\n"
               "        try:\n            open(target, 'a').write('x')\n            seen.append('written')\n"
               "        except OSError as exc:\n            seen.append(type(exc).__name__)\n"
               "    return seen, sorted(os.listdir('/proc'))[-1], os.listdir('/dev')\n")
    body = rootless.post("/v1/rewards", json={"items": [{"response": program, "tests": [
        "assert f()[0] == ['OSError', 'OSError', 'FileNotFoundError', 'FileNotFoundError']",
        "assert 'written' not in f()[0]"]}]}).json()
    assert body["rewards"] == [0.5] or body["items"][0]["tests"]["outcomes"][1] == "pass", body
    assert body["items"][0]["tests"]["outcomes"][1] == "pass", body
    assert canary.read_text() == "untouched"


def test_ipc_objects_do_not_carry_data_between_runs_without_host_root(rootless: httpx.Client) -> None:
    """Rootless, a run is uid 0 of the user namespace that owns its zygote's namespaces and could raise shared
    IPC limits again through /proc/sys: each run has an IPC namespace of its own here."""
    for _ in range(4):  # at least one per slot
        assert score(rootless, IPC, ["assert len(leave()) == 4"])["reward"] == 1.0
    for _ in range(8):
        assert score(rootless, IPC, ["assert find() == [False, False, False, False]"])["reward"] == 1.0
