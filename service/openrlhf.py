"""OpenRLHF's remote reward protocol on top of the reward service: `POST /get_reward`.

An unmodified OpenRLHF trainer sends `{"query": [prompt+response, ...], "prompts": [...], "labels": [...]}`
(one sample per request, many requests at once) and reads `{"rewards", "scores", "extra_logs"}`. Each sample
becomes one item of the ordinary reward path, so concurrent one-sample requests share the sandbox pool and the
reward model's micro-batcher exactly as one big request would.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from acecoder_reward.service import datasets, protocol
from acecoder_reward.service.datasets import DatasetError, Problem
from acecoder_reward.service.errors import InvalidRequest
from acecoder_reward.service.rewards import RewardService
from acecoder_reward.service.settings import Settings

log = logging.getLogger(__name__)
# Chat markers, Qwen's (ChatML) and Llama 3's: where the assistant's turn starts, where the user's starts, and
# what ends a turn.
ASSISTANT_MARKERS = ("<|im_start|>assistant\n", "<|start_header_id|>assistant<|end_header_id|>\n\n")
USER_MARKERS = ("<|im_start|>user\n", "<|start_header_id|>user<|end_header_id|>\n\n")
END_OF_TURN = ("<|im_end|>", "<|eot_id|>")
END_MARKERS = (*END_OF_TURN, "<|endoftext|>", "<|end_of_text|>")
LABEL_FIELDS = ("tests", "fn_name", "compare", "test_imports")  # an item's fields a label sets
# A prompt's label comes with each of its N samples: JSON labels up to this long are parsed once (the last
# LABEL_MEMO_SIZE of them kept), longer ones (large I/O tests) each time rather than kept.
LABEL_MEMO_CHARS = 16_384
LABEL_MEMO_SIZE = 256


def question_key(text: str) -> str:
    """A question's lookup key: its words joined by single spaces (so line breaks and indentation a chat
    template or a dataset adds do not matter), hashed."""
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()


@dataclass(frozen=True, eq=False)
class Dataset(Mapping[str, Problem]):
    """The server's dataset: problems by row id (a label may name one), and by question (`question_key` of the
    row's `question` and of the last user message of its `context_messages`), for requests without labels. A
    question two rows share with different problems finds neither (`None`)."""

    by_id: dict[str, Problem]
    by_question: dict[str, Problem | None]

    def __getitem__(self, key: str) -> Problem:
        return self.by_id[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.by_id)

    def __len__(self) -> int:
        return len(self.by_id)


def load_dataset(path: Path) -> Dataset:
    """A dataset file (JSONL, .gz too, or Parquet) in any format service/datasets.py reads (AceCode-87K's
    `id`, `question`, `test_cases`; APPS, LiveCodeBench, ...): rows keyed by their id and question, each with
    tests."""
    problems: dict[str, Problem] = {}
    questions: dict[str, Problem | None] = {}
    for n, row in enumerate(datasets.read_rows(path), 1):
        key = datasets.row_id(row, None)
        try:
            problem = datasets.problem_of(row)
        except DatasetError as exc:
            raise ValueError(f"{path}: row {n}: {exc}") from exc
        if key is None or not problem.tests:
            raise ValueError(f"{path}: row {n}: a row needs an id ({', '.join(datasets.ID_FIELDS)}) and tests")
        problems[str(key)] = problem
        for text in {problem.question, _user_message(row.get("context_messages"))} - {None}:
            qkey = question_key(text or "")
            questions[qkey] = problem if questions.get(qkey, problem) == problem else None
    log.info("dataset %s: %d tasks", path, len(problems))
    return Dataset(problems, questions)


def _user_message(messages: Any) -> str | None:
    if not isinstance(messages, list):
        return None
    users = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return users[-1] if users and isinstance(users[-1], str) else None


def label_problem(value: Any) -> Problem:
    """A JSON label's problem: a list of asserts (or LiveCodeBench's list of tests), an input/output object
    ({"inputs", "outputs", "fn_name"?}, CodeContests' {"input", "output"}), or {"tests": <any of those>,
    "question"?, "fn_name"?, "compare"?, "test_imports"?}."""
    if isinstance(value, dict) and "tests" in value:
        unknown = set(value) - {"question", *LABEL_FIELDS}
        if unknown:
            raise DatasetError(f"unknown fields {sorted(unknown)}")
        problem = Problem(value.get("question"), value["tests"], value.get("fn_name"), value.get("compare"),
                          value.get("test_imports", []))
    elif isinstance(value, dict) or (isinstance(value, list) and all(isinstance(t, (str, dict)) for t in value)):
        problem = Problem(None, value)
    else:
        raise DatasetError("a JSON label is a list of asserts, an input/output object, or an object with `tests`")
    return datasets.checked(problem)


def split_query(query: str, prompt: str | None) -> tuple[str, str]:
    """(prompt, response) of one sample: the query minus its prompt, else what follows the last assistant
    marker (Qwen's or Llama 3's); end-of-turn markers the policy emitted are dropped from the response."""
    at, marker = max((query.rfind(m), m) for m in ASSISTANT_MARKERS)
    if prompt is not None and query.startswith(prompt):
        head, response = prompt, query[len(prompt):]
    elif at >= 0:
        head, response = query[: at + len(marker)], query[at + len(marker):]
    else:
        raise ValueError("the query neither starts with its prompt nor holds an assistant marker (Qwen's or "
                         "Llama 3's)")
    while (trimmed := response.rstrip()).endswith(END_MARKERS):  # the text before the markers stays as written
        response = next(trimmed.removesuffix(m) for m in END_MARKERS if trimmed.endswith(m))
    return head, response


def question_of(prompt: str) -> str:
    """The last user turn of a chat-templated prompt (the problem statement), else the prompt itself."""
    at, marker = max((prompt.rfind(m), m) for m in USER_MARKERS)
    if at < 0:
        return prompt.strip()
    body = prompt[at + len(marker):]
    for end in END_OF_TURN:
        body = body.split(end, 1)[0]
    return body.strip()


class OpenRLHFAdapter:
    def __init__(self, rewards: RewardService, settings: Settings, dataset: Dataset | None) -> None:
        self.rewards = rewards
        self.settings = settings
        self.dataset = dataset or Dataset({}, {})

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
                                      untrusted_tests=body.untrusted_tests, cache=body.cache)

    def _item(self, body: protocol.OpenRLHFRequest, i: int, reward: str) -> protocol.RewardItem:
        try:
            prompt, response = split_query(body.query[i], body.prompts[i] if body.prompts else None)
        except ValueError as exc:
            raise InvalidRequest(f"query.{i}: {exc}", field=f"query.{i}") from exc
        label = body.labels[i].strip() if body.labels else ""
        # No label (none sent, empty, or JSON null as OpenRLHF's custom-function mode sends a missing one): the
        # dataset's row for the prompt's question.
        labelled = label not in ("", "null")
        problem = self._problem(label, i) if labelled else self._problem_by_question(prompt)
        if reward != "model" and not problem.tests:
            raise InvalidRequest(f"labels.{i}: reward={reward} needs tests: a JSON list of asserts, an input/output "
                                 "object, or a key into the server's dataset (ACECODER_DATASET_PATH); without a "
                                 "label, the prompt's question must be one row's question in that dataset",
                                 field=f"labels.{i}")
        item = problem.item(response)
        if not problem.question:
            item["question"] = question_of(prompt)
        try:
            return protocol.RewardItem.model_validate(item)
        except ValidationError as exc:  # checked() took the label; this is a last guard, named the same way
            raise InvalidRequest(f"labels.{i}: {exc.errors()[0]['msg']}", field=f"labels.{i}") from exc

    def _problem_by_question(self, prompt: str) -> Problem:
        """No label: the dataset's row whose question is the prompt's last user turn (whitespace aside)."""
        return self.dataset.by_question.get(question_key(question_of(prompt))) or Problem(None)

    def _problem(self, label: str, i: int) -> Problem:
        text = label.strip()
        if text.startswith(("[", "{")):
            try:
                return _parsed_label(text) if len(text) <= LABEL_MEMO_CHARS else label_problem(json.loads(text))
            except ValueError as exc:  # bad JSON, or DatasetError
                raise InvalidRequest(f"labels.{i}: {exc}", field=f"labels.{i}") from exc
        problem = self.dataset.get(text)
        if problem is None:
            where = "the server has no dataset (ACECODER_DATASET_PATH)" if not self.dataset else "not in the dataset"
            raise InvalidRequest(f"labels.{i}: {text[:80]!r} is not a test list, and {where}", field=f"labels.{i}")
        return problem


@functools.lru_cache(maxsize=LABEL_MEMO_SIZE)
def _parsed_label(text: str) -> Problem:
    """A JSON label's problem, shared by the requests that send the same label (nothing changes a Problem: it
    is frozen, and validating an item copies its lists)."""
    return label_problem(json.loads(text))


def _renamed(exc: InvalidRequest) -> InvalidRequest:
    """items.N.response -> query.N, items.N.tests (and the label's other fields) -> labels.N, items -> query;
    the message's prefix too."""
    field = exc.field
    if field is None or not field.startswith("items"):
        return exc
    parts = field.split(".")
    if len(parts) >= 3:
        new = f"{'labels' if parts[2] in LABEL_FIELDS else 'query'}.{parts[1]}"
    else:
        new = "query"
    message = exc.message
    if message.startswith(f"{field}:"):
        message = new + message[len(field):]
    return InvalidRequest(message, field=new)
