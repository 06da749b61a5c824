"""The image installs exactly the pinned runtime dependencies of pyproject.toml (its dependency layer lists
them separately, to be cached apart from the source)."""

from __future__ import annotations

import tomllib

from tests.conftest import REPO


def test_dockerfile_pins_every_runtime_dependency() -> None:
    pins = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    dockerfile = (REPO / "Dockerfile").read_text()
    missing = [pin for pin in pins if f'"{pin}"' not in dockerfile]
    assert missing == []
