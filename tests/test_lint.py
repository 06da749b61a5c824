"""Tooling enforces the code policy: the project lints and type-checks clean with its own configuration."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_ruff_is_clean() -> None:
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "service", "sandbox_worker", "models", "loadtest",
                             "tests", "client"], cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean() -> None:
    # The installed package by its name (its files are the linked folders), then what is not installed.
    for targets in (["-p", "acecoder_reward"], ["loadtest", "client/acecoder_reward_client"]):
        result = subprocess.run([sys.executable, "-m", "mypy", *targets], cwd=REPO, capture_output=True, text=True,
                                check=False)
        assert result.returncode == 0, result.stdout + result.stderr
