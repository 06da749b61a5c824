"""The gateway replay benchmark (loadtest/bench_gateway.py) end to end, briefly: this tree against HEAD, under
cProfile, answers compared byte for byte; and its CPU reading."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from loadtest.bench_gateway import cpu_s
from tests.conftest import REPO


def test_cpu_reading_counts_this_process() -> None:
    before = cpu_s(os.getpid())
    deadline = time.process_time() + 0.1
    while time.process_time() < deadline:
        pass
    assert cpu_s(os.getpid()) - before >= 0.05


def test_replay_against_head_under_the_profiler() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "loadtest.bench_gateway", "--problems", "2", "--samples", "4", "--passes", "1",
         "--rounds", "2", "--concurrency", "4", "--baseline-rev", "HEAD", "--profile", "--top", "3"],
        cwd=REPO, capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "this tree / baseline, paired per round" in out
    # 8 requests per round, 2 rounds, every one a hit on each side; both profiles printed.
    assert out.count("16 / 0 / 0 / 0") == 2, out
    assert out.count("cProfile over the timed rounds") == 2, out
