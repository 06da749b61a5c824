"""Test holes compiled in the zygote, once per distinct hole, for its runs (see Supervisor.run_program).

A problem's tests come with each of its sampled responses, so most holes repeat: compiled here once, a run
gets them as code objects and skips the compiler (~20 us a hole when warm, more in freshly cloned memory;
~2% of a HumanEval program's CPU). Test sources are request input, so what the zygote spends on them is
bounded: only short sources, only small code objects (constant folding can turn a 2,000-character source
into an 800 KB code object), a cache bounded in bytes, and a time budget per job for compiling. Whatever is
left out is compiled by the run itself, within its own deadline and memory limit, as it always was.
"""

from __future__ import annotations

import marshal
import time
import warnings
from collections import OrderedDict
from typing import Any

from acecoder_reward.sandbox_worker import runner

MAX_SOURCE_CHARS = 2000
MAX_CODE_BYTES = 8192  # marshalled; HumanEval's holes are 200-500 bytes
CACHE_BYTES = 8 << 20
JOB_BUDGET_S = 0.02  # compiling the misses of one job; a typical job's take ~0.2 ms
ENTRY_OVERHEAD = 200  # the key tuple, the dict slot, the code object's own header


class HoleCache:
    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[tuple[str, bool, int], tuple[Any, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def compile_job(self, tests: list[dict[str, Any]]) -> list[list[Any]]:
        """Per test, per hole: its code object, or None where the run must compile the source itself."""
        deadline = time.monotonic() + JOB_BUDGET_S
        return [[self.get(source, test["in_sandbox"], index, deadline) for source in test["holes"]]
                for index, test in enumerate(tests)]

    def get(self, source: str, whole_test: bool, index: int, deadline: float) -> Any:
        if len(source) > MAX_SOURCE_CHARS:
            return None  # not even a cache key
        key = (source, whole_test, index)
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            return entry[0]
        if time.monotonic() >= deadline:
            return None  # not cached: a later job may have the time
        code, size = _compile(source, whole_test, index)
        self._entries[key] = (code, size)
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, (_, evicted) = self._entries.popitem(last=False)
            self.bytes -= evicted
        return code


def _compile(source: str, whole_test: bool, index: int) -> tuple[Any, int]:
    """(the code object or None, what the entry holds in bytes, roughly)."""
    held = 2 * len(source) + ENTRY_OVERHEAD
    try:
        # A hole the compiler warns about is left to the run too, so the warning stays in its output.
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            code = runner.compile_hole(source, whole_test, index)
        size = len(marshal.dumps(code))
    except Exception:  # the run compiles it again and reports the error as its own
        return None, held
    if size > MAX_CODE_BYTES:
        return None, held
    return code, held + 2 * size
