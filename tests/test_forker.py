"""The forker: a fresh interpreter per slot holding only what runs need, plus the operator's preloads.

Every page the forker holds is copied (as page tables) into each run and freed at its exit, so what it holds is
a cost every run pays; these tests pin down what that is, and that a preload which cannot import stops the
service at startup instead of failing requests.
"""

from __future__ import annotations

import asyncio
import sys

import httpx
import idna
import pytest
from pydantic import ValidationError

from acecoder_reward.sandbox_worker import executor as executor_module
from acecoder_reward.sandbox_worker import isolation, plain_data
from acecoder_reward.sandbox_worker.executor import Limits
from acecoder_reward.sandbox_worker.forker import DEFAULT_PRELOAD
from acecoder_reward.sandbox_worker.isolation import IsolationUnavailable
from acecoder_reward.sandbox_worker.pool import PoolConfig, SandboxPool
from acecoder_reward.service.settings import Settings
from tests.conftest import score

UID_BASE = 206000  # apart from the session gateway's slots: no shared per-uid process limits
LIMITS = Limits(test_timeout_s=4, program_timeout_s=10, memory_mb=1024, max_processes=8, max_open_files=64,
                max_file_bytes=1 << 20, max_output_bytes=1 << 16, max_result_bytes=1 << 16)
MODULES_SEEN = ("import sys\n"
                "def seen(names):\n    return [name in sys.modules for name in names]\n")


def test_runs_hold_the_preloads_and_none_of_the_zygote_s_modules(client: httpx.Client) -> None:
    preloaded = list(DEFAULT_PRELOAD)
    # The zygote's own modules and what they import, and stdlib modules no preload pulls in.
    absent = ["acecoder_reward.sandbox_worker.supervise", "acecoder_reward.sandbox_worker.watch", "acecoder_reward.sandbox_worker.hole_cache",
              "acecoder_reward.sandbox_worker.cgroups", "acecoder_reward.sandbox_worker.zygote", "dataclasses", "inspect", "hashlib", "datetime",
              "ast", "socket", "base64", "traceback"]
    result = score(client, MODULES_SEEN, [f"assert seen({preloaded!r}) == {[True] * len(preloaded)!r}",
                                          f"assert seen({absent!r}) == {[False] * len(absent)!r}"])
    assert result["tests"]["outcomes"] == ["pass", "pass"], result


def test_modules_left_out_of_the_preload_still_import(client: httpx.Client) -> None:
    program = ("import dataclasses, hashlib, datetime, ast, base64, statistics\n"
               "@dataclasses.dataclass\nclass P:\n    x: int\n"
               "def f():\n    return [P(3).x, hashlib.md5(b'a').hexdigest()[:6], datetime.date(2024, 2, 29).isoformat(),\n"
               "            ast.literal_eval('[1, 2]'), base64.b64encode(b'hi').decode(), statistics.median([3, 1, 2])]\n")
    result = score(client, program, ["assert f() == [3, '0cc175', '2024-02-29', [1, 2], 'aGk=', 2]"])
    assert result["tests"]["outcomes"] == ["pass"], result


def _config(preload: tuple[str, ...]) -> PoolConfig:
    settings = Settings()
    return PoolConfig(size=1, isolation="namespaces", hidden_paths=tuple(settings.sandbox_hidden_paths),
                      uid_base=UID_BASE, scratch_mb=16, preload=preload)


async def _start_and_close(preload: tuple[str, ...]) -> None:
    pool = SandboxPool(_config(preload))
    try:
        await pool.start()
    finally:
        await pool.close()


def test_an_operator_preload_is_in_every_run_and_site_packages_still_import() -> None:
    """The forker starts without `site` (-S) and takes the zygote's sys.path instead: allowed third-party
    packages import from site-packages as before, and `exit`/`quit` are there as in any interpreter."""
    third_party = ("import sys\ndef f():\n    import idna\n    return idna.__name__\n"
                   "def g():\n    import sniffio\n    return 1\n"
                   "def h():\n    return [type(exit).__name__, type(quit).__name__, sys.flags.no_site, sys.prefix]\n")

    async def scenario() -> list[list[str | None]]:
        pool = SandboxPool(_config(("statistics", "fractions")))
        await pool.start()
        try:
            executor = executor_module.TestExecutor(pool, ["idna"])
            tests = ["assert seen(['statistics', 'dataclasses']) == [True, False]"]
            jobs = [(MODULES_SEEN, tests)] * 3 + [
                (third_party, ["assert f() == 'idna'", "assert g() == 1", f"assert h() == ['Quitter', 'Quitter', 1, {sys.prefix!r}]"])]
            results = await executor.execute_many(jobs, LIMITS)
            return [[*r.tests.outcomes, *r.tests.details] for r in results]
        finally:
            await pool.close()

    *preloaded, imports = asyncio.run(scenario())
    assert preloaded == [["pass", None]] * 3
    # Where the virtualenv itself lives under /tmp (a CI clone), each run's own scratch tmpfs covers it:
    # its packages cannot be imported in runs, as the README says.
    under_scratch = idna.__file__.startswith(isolation.SCRATCH_DIR + "/")
    assert imports[:3] == ["error" if under_scratch else "pass", "error", "pass"], imports
    assert "missing dependency: 'sniffio'" in str(imports[4]), imports


def test_a_preload_that_cannot_be_imported_stops_startup_and_names_it() -> None:
    with pytest.raises(IsolationUnavailable, match="sandbox_preload: cannot import 'no_such_module_for_acecoder'"):
        asyncio.run(_start_and_close(("json", "no_such_module_for_acecoder")))


def test_a_preload_that_starts_threads_is_refused() -> None:
    """A run is a clone of the forker's one thread: OpenBLAS threads started by `import numpy` would be
    missing in every run, and its first matrix product would wait for them forever."""
    pytest.importorskip("numpy")

    with pytest.raises(IsolationUnavailable, match="importing 'numpy' started threads"):
        asyncio.run(_start_and_close(("numpy",)))


def test_candidate_code_is_compiled_with_its_own_future_flags(client: httpx.Client) -> None:
    """The runner's own `from __future__ import annotations` must not turn a program's annotations into
    strings (it did, through compile()'s flag inheritance)."""
    program = "def g(x: int) -> int:\n    return x\ndef f():\n    return [v is int for v in g.__annotations__.values()]\n"
    result = score(client, program, ["assert f() == [True, True]", "assert (lambda: g.__annotations__['x'])() is int"])
    assert result["tests"]["outcomes"] == ["pass", "pass"], result


def test_preload_names_are_plain_module_names() -> None:
    for bad in (["json."], [""], ["unittest.__main__"], ["antigravity"], ["a-b"], ["acecoder_reward.sandbox_worker.zygote"]):
        with pytest.raises(ValidationError, match="ACECODER_SANDBOX_PRELOAD must list importable module names"):
            Settings(sandbox_preload=bad, sandbox_allowed_modules=["sandbox_worker"])


def test_third_party_preloads_must_be_allowed_modules() -> None:
    with pytest.raises(ValidationError, match=r"ACECODER_SANDBOX_PRELOAD.*'numpy\.linalg'"):
        Settings(sandbox_preload=["numpy.linalg"])
    assert Settings(sandbox_preload=["numpy.linalg"], sandbox_allowed_modules=["numpy"]).sandbox_preload == ["numpy.linalg"]
    assert Settings(sandbox_preload=["os.path", "xml.dom"]).sandbox_preload == ["os.path", "xml.dom"]


def test_base64_bodies_decode_strictly_as_before() -> None:
    """plain_data decodes bytes with binascii (the base64 module stays out of the runs): same strictness."""
    assert plain_data.decode(plain_data.encode(b"\x00\xff")) == b"\x00\xff"
    for body in ("aGk", "a$Gk=", "aGk==="):
        with pytest.raises(ValueError):
            plain_data.decode({"b": body})
