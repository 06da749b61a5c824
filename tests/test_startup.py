"""Fail closed: where the kernel refuses the sandbox's namespaces, the service refuses to start with a clear
error, unless the operator explicitly opts out (ACECODER_SANDBOX_ISOLATION=none)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, Gateway, free_port, stop_gateway, wait_healthy

# A user namespace in which creating further user namespaces is forbidden, and where uid 200000 (the
# sandbox's run uid) does not exist: the sandbox cannot isolate runs there.
NO_NAMESPACES = ["unshare", "--user", "--map-root-user", "sh", "-c",
                 'echo 0 > /proc/sys/user/max_user_namespaces && exec "$@"', "sh"]

pytestmark = pytest.mark.skipif(shutil.which("unshare") is None, reason="util-linux unshare not installed")


def _serve(tmp_path: Path, extra_env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path, int]:
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    env = {"PATH": "/usr/bin:/bin", "ACECODER_PORT": str(port), **extra_env}
    proc = subprocess.Popen([*NO_NAMESPACES, sys.executable, "-m", "acecoder_reward.service.cli", "serve"], cwd=REPO, env=env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    return proc, log, port


def test_refuses_to_start_where_namespaces_are_refused(tmp_path: Path) -> None:
    proc, log, _ = _serve(tmp_path, {})
    assert proc.wait(timeout=60) != 0
    text = log.read_text()
    assert "sandbox isolation unavailable" in text
    assert "ACECODER_SANDBOX_ISOLATION=none" in text


def test_explicit_opt_out_starts_unisolated_and_says_so(tmp_path: Path) -> None:
    proc, log, port = _serve(tmp_path, {"ACECODER_SANDBOX_ISOLATION": "none"})
    gateway = Gateway(f"http://127.0.0.1:{port}", proc, log)
    try:
        wait_healthy(gateway)
        answer = httpx.post(gateway.url + "/v1/rewards", timeout=60, json={
            "items": [{"response": "def f(x):\n    return x\n", "tests": ["assert f(1) == 1"]}]})
        assert answer.json()["rewards"] == [1.0]
    finally:
        stop_gateway(gateway)
    assert "isolation is OFF" in log.read_text()
