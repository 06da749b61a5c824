"""OpenRLHF's remote reward protocol on top of the reward service: `POST /get_reward`.

An unmodified OpenRLHF trainer sends `{"query": [prompt+response, ...], "prompts": [...], "labels": [...]}`
(one sample per request, many requests at once) and reads `{"rewards", "scores", "extra_logs"}`. Each sample
becomes one item of the ordinary reward path, so concurrent one-sample requests share the sandbox pool and the
reward model's micro-batcher exactly as one big request would.
"""

from __future__ import annotations

import gzip
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from service import protocol
from service.errors import InvalidRequest
from service.rewards import RewardService
from service.settings import Settings

log = logging.getLogger(__name__)
ASSISTANT_MARKER = "<|im_start|>assistant\n"
USER_MARKER = "<|im_start|>user\n"
END_MARKERS = ("<|im_end|>", "<|endoftext|>")


@dataclass(frozen=True)
class Task:
    question: str | None
    tests: list[str]


def load_dataset(path: Path) -> dict[str, Task]:
    """AceCode-style JSONL (optionally .gz): rows with `id`, `question` and `test_cases` (or `tests`)."""
    opener = gzip.open if path.suffix == ".gz" else open
    tasks: dict[str, Task] = {}
    with opener(path, "rt", encoding="utf-8") as f:  # type: ignore[operator]
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            tests = row.get("test_cases", row.get("tests"))
            if "id" not in row or not isinstance(tests, list):
                raise ValueError(f"{path}:{n}: a row needs `id` and a list `test_cases`")
            tasks[str(row["id"])] = Task(question=row.get("question"), tests=[str(t) for t in tests])
    log.info("dataset %s: %d tasks", path, len(tasks))
    return tasks


def split_query(query: str, prompt: str | None) -> tuple[str, str]:
    """(prompt, response) of one sample: the query minus its prompt, else what follows the last assistant
    marker; end-of-turn markers the policy emitted are dropped from the response."""
    if prompt is not None and query.startswith(prompt):
        head, response = prompt, query[len(prompt):]
    elif (at := query.rfind(ASSISTANT_MARKER)) >= 0:
        head, response = query[: at + len(ASSISTANT_MARKER)], query[at + len(ASSISTANT_MARKER):]
    else:
        raise ValueError("the query neither starts with its prompt nor holds a Qwen assistant marker")
    while (trimmed := response.rstrip()).endswith(END_MARKERS):  # the text before the markers stays as written
        response = next(trimmed.removesuffix(m) for m in END_MARKERS if trimmed.endswith(m))
    return head, response


def question_of(prompt: str) -> str:
    """The last user turn of a chat-templated prompt (the problem statement), else the prompt itself."""
    at = prompt.rfind(USER_MARKER)
    if at < 0:
        return prompt.strip()
    body = prompt[at + len(USER_MARKER):]
    return body.split("<|im_end|>", 1)[0].strip()


class OpenRLHFAdapter:
    def __init__(self, rewards: RewardService, settings: Settings, dataset: dict[str, Task] | None) -> None:
        self.rewards = rewards
        self.settings = settings
        self.dataset = dataset or {}

    async def get_reward(self, body: protocol.OpenRLHFRequest) -> protocol.OpenRLHFResponse:
        request = self._reward_request(body)
        try:
            result = await self.rewards.score(request)
        except InvalidRequest as exc:  # named in this request's terms: items.3.response -> query.3
            raise _renamed(exc) from exc
        logs: dict[str, list[float]] = {}
        if request.reward != "model":
            logs["pass_rate"] = [i.tests.pass_rate if i.tests else 0.0 for i in result.items]
            logs["no_code"] = [float(i.tests is not None and i.tests.status == "no_code") for i in result.items]
            logs["judged_in_sandbox_share"] = [
                len(i.tests.judged_in_sandbox) / len(i.tests.outcomes) if i.tests and i.tests.outcomes else 0.0
                for i in result.items]
        if request.reward != "tests":
            logs["model_score"] = [i.model.score if i.model else 0.0 for i in result.items]
        return protocol.OpenRLHFResponse(rewards=result.rewards, scores=result.rewards, extra_logs=logs)

    def _reward_request(self, body: protocol.OpenRLHFRequest) -> protocol.RewardRequest:
        n = len(body.query)
        for name, values in (("prompts", body.prompts), ("labels", body.labels)):
            if values is not None and len(values) != n:
                raise InvalidRequest(f"{name}: {len(values)} entries for {n} queries", field=name)
        s = self.settings
        reward = body.reward or s.openrlhf_reward
        if reward != "tests" and self.rewards.model is None and body.reward is None:
            reward = "tests"  # no reward model here: labels with tests still give the test reward
        items = [self._item(body, i, reward) for i in range(n)]
        weights = body.weights or (protocol.Weights(tests=s.openrlhf_weight_tests, model=s.openrlhf_weight_model)
                                   if reward == "combined" else None)
        return protocol.RewardRequest(items=items, reward=reward, weights=weights,
                                      tests_reward=body.tests_reward or s.openrlhf_tests_reward,
                                      untrusted_tests=body.untrusted_tests)

    def _item(self, body: protocol.OpenRLHFRequest, i: int, reward: str) -> protocol.RewardItem:
        try:
            prompt, response = split_query(body.query[i], body.prompts[i] if body.prompts else None)
        except ValueError as exc:
            raise InvalidRequest(f"query.{i}: {exc}", field=f"query.{i}") from exc
        task = self._task(body.labels[i], i) if body.labels else Task(None, [])
        if reward != "model" and not task.tests:
            raise InvalidRequest(f"labels.{i}: reward={reward} needs tests: a JSON list of asserts, or a key "
                                 "into the server's dataset (ACECODER_DATASET_PATH)", field=f"labels.{i}")
        return protocol.RewardItem(question=task.question or question_of(prompt), response=response,
                                   tests=task.tests)

    def _task(self, label: str, i: int) -> Task:
        text = label.strip()
        if text.startswith(("[", "{")):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InvalidRequest(f"labels.{i}: not valid JSON: {exc}", field=f"labels.{i}") from exc
            if isinstance(value, list) and all(isinstance(t, str) for t in value):
                return Task(None, value)
            if isinstance(value, dict) and isinstance(value.get("tests"), list):
                question = value.get("question")
                return Task(question if isinstance(question, str) else None, [str(t) for t in value["tests"]])
            raise InvalidRequest(f"labels.{i}: a JSON label is a list of asserts or an object with `tests`",
                                 field=f"labels.{i}")
        task = self.dataset.get(text)
        if task is None:
            where = "the server has no dataset (ACECODER_DATASET_PATH)" if not self.dataset else "not in the dataset"
            raise InvalidRequest(f"labels.{i}: {text[:80]!r} is not a test list, and {where}", field=f"labels.{i}")
        return task


def _renamed(exc: InvalidRequest) -> InvalidRequest:
    """items.N.response -> query.N, items.N.tests -> labels.N, items -> query; the message's prefix too."""
    field = exc.field
    if field is None or not field.startswith("items"):
        return exc
    parts = field.split(".")
    if len(parts) >= 3:
        new = f"{'labels' if parts[2] == 'tests' else 'query'}.{parts[1]}"
    else:
        new = "query"
    message = exc.message
    if message.startswith(f"{field}:"):
        message = new + message[len(field):]
    return InvalidRequest(message, field=new)
