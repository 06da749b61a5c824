"""What, besides a program and its tests, decides how its run and judging come out on a given process.

The code (the package version and a hash of this package's source: the runner, the judge, the comparisons),
the isolation mode, the modules candidates may import, the sandbox's settings and the limit caps. The
test-result cache keys on it, so outcomes recorded under one configuration are never served under another:
in queue mode each worker publishes its profile with its heartbeat, and gateways use the cache only while all
live workers share one (not during a rolling upgrade or with workers configured apart).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import orjson

from acecoder_reward.sandbox_worker.executor import Limits


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    h = hashlib.blake2b(digest_size=8)
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.read_bytes())
    return f"{metadata.version('acecoder-reward')}+{h.hexdigest()}"


def run_profile(isolation: str, allowed_modules: Sequence[str], caps: Limits, scratch_mb: int,
                hidden_paths: Sequence[str], preload: Sequence[str]) -> str:
    return hashlib.blake2b(orjson.dumps({
        "code": code_version(), "isolation": isolation, "modules": sorted(allowed_modules), "caps": caps.__dict__,
        "scratch_mb": scratch_mb, "hidden": sorted(hidden_paths), "preload": sorted(preload),
    }, option=orjson.OPT_SORT_KEYS), digest_size=16).hexdigest()
