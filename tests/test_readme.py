"""The README stays true: every setting is documented, and the two commands it gives exist."""

from __future__ import annotations

import os

from service.settings import Settings
from tests.conftest import REPO


def test_every_setting_is_documented() -> None:
    readme = (REPO / "README.md").read_text()
    missing = [n for n in Settings.model_fields if f"`ACECODER_{n.upper()}`" not in readme]
    assert missing == []


def test_readme_commands_exist_and_ci_runs_the_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    for script in ("scripts/serve", "scripts/test"):
        assert f"./{script}" in readme
        assert os.access(REPO / script, os.X_OK)
    assert "./scripts/test" in (REPO / ".ci" / "run").read_text()
