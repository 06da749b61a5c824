"""OpenRLHF's custom-function mode, backed by the reward service: `--remote_rm_url /path/to/openrlhf.py`
(this file, from site-packages) makes OpenRLHF import `reward_func` instead of calling an HTTP reward server.

Labels carry the tests (a JSON list of asserts, an input/output object such as APPS's {"inputs", "outputs"}, or
{"tests": ..., "question"?, "fn_name"?, "compare"?, "test_imports"?}; a label that is not text is sent as its
JSON) or a key into the service's dataset; queries and prompts are forwarded to the service's
`/get_reward`, which splits the responses off and batches across calls. `ACECODER_REWARD_URL` names the service.
"""

from __future__ import annotations

import json
from typing import Any

from acecoder_reward_client._shared import service_url, sync_client


def reward_func(queries: list[str], prompts: list[str], labels: list[Any], **_: Any) -> dict[str, Any]:
    """OpenRLHF's signature; answers `{"rewards", "scores", "extra_logs"}` as torch tensors when torch is
    importable (it is, inside OpenRLHF), else as lists."""
    body = {"query": list(queries), "prompts": list(prompts),
            "labels": [label if isinstance(label, str) else json.dumps(label) for label in labels]}
    answer = sync_client(service_url(None)).post("/get_reward", body)
    try:
        import torch
    except ImportError:
        return answer
    return {"rewards": torch.tensor(answer["rewards"]), "scores": torch.tensor(answer["scores"]),
            "extra_logs": {k: torch.tensor(v) for k, v in answer["extra_logs"].items()}}
