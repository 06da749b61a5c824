"""synthesize-tests: an OpenAI-compatible chat endpoint turns a seed (a question, or a program to write one for)
into a LeetCode-style question and ~20 assert tests, as AceCoder's test synthesis did.

The model is asked for one JSON object `{"question", "entry_point", "tests": [...]}` (bare, or in a ```json
fence). Of its tests, only single `assert` statements that parse and call the entry point are kept. A reply that
is not such an object, or keeps fewer than `min_tests`, is refused (`Refused`) and asked again, like a failed
call (`LLMError`: transport errors, non-200 answers, bodies not in the chat-completions shape), with exponential
backoff; after the last retry the seed is reported as failed, never silently dropped.
"""

from __future__ import annotations

import ast
import asyncio
import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx

from acecoder_reward.service.data.ledger import RowError, Rows

TESTS_WANTED = 20
MAX_BACKOFF_S = 60.0
SYSTEM = "You are an expert Python programmer who writes programming problems and their unit tests."
FROM_QUESTION = ("Rewrite the problem below as a self-contained LeetCode-style question that asks for one Python "
                 "function, and write about {n} independent test cases for it.")
FROM_PROGRAM = ("Write a self-contained LeetCode-style question that the Python program below solves (the question "
                "asks for its main function), and write about {n} independent test cases for it.")
ANSWER_FORMAT = ("Each test is a single line `assert <call of the function> == <expected value>`. Answer with only a "
                 'JSON object: {"question": "...", "entry_point": "<function name>", "tests": ["assert ...", ...]}.')
_FENCE = re.compile(r"```(?:json)?\s*\n(.*?)```", re.DOTALL)


class LLMError(Exception):
    """The endpoint did not answer with a chat completion (transport error, non-200, wrong shape)."""


class Refused(Exception):
    """The completion was not a usable question with enough valid tests."""


@dataclass(frozen=True)
class Synthesized:
    question: str
    entry_point: str
    tests: list[str]
    refused_tests: int  # tests in the reply not kept: not a single assert calling the entry point, or a repeat


def prompt(seed_question: str | None, seed_program: str | None) -> list[dict[str, str]]:
    if seed_program:
        ask, body = FROM_PROGRAM, f"```python\n{seed_program.strip()}\n```"
    else:
        ask, body = FROM_QUESTION, (seed_question or "").strip()
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"{ask.format(n=TESTS_WANTED)} {ANSWER_FORMAT}\n\n{body}"}]


def parse(text: str, min_tests: int, entry_hint: str | None = None) -> Synthesized:
    """The reply's question and valid tests; Refused naming what is wrong."""
    reply = _json_object(text)
    question, tests = reply.get("question"), reply.get("tests")
    if not isinstance(question, str) or not question.strip():
        raise Refused("no question")
    if not isinstance(tests, list):
        raise Refused("no tests list")
    entry = reply.get("entry_point") if isinstance(reply.get("entry_point"), str) else entry_hint
    if not entry or not entry.isidentifier():
        raise Refused("no entry_point")
    valid = list(dict.fromkeys(t.strip() for t in tests if isinstance(t, str) and calls_entry(t, entry)))
    if len(valid) < min_tests:
        raise Refused(f"{len(valid)} valid tests of {len(tests)}; at least {min_tests} needed")
    return Synthesized(question.strip(), entry, valid, len(tests) - len(valid))


def _json_object(text: str) -> dict[str, Any]:
    for candidate in [text.strip(), *_FENCE.findall(text)]:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    raise Refused("the reply holds no JSON object")


def calls_entry(test: str, entry: str) -> bool:
    """One `assert` statement that parses and calls `entry` by name."""
    try:
        module = ast.parse(test)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    if len(module.body) != 1 or not isinstance(module.body[0], ast.Assert):
        return False
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == entry
               for n in ast.walk(module.body[0].test))


def entry_of(program: str | None) -> str | None:
    """The first top-level function a seed program defines."""
    try:
        module = ast.parse(program or "")
    except (SyntaxError, ValueError):
        return None
    return next((n.name for n in module.body if isinstance(n, ast.FunctionDef)), None)


@dataclass(frozen=True)
class LLMConfig:
    url: str  # the API base, e.g. http://host:8000/v1 (POST {url}/chat/completions)
    model: str
    api_key: str | None = None
    temperature: float = 0.2
    timeout_s: float = 300.0
    retries: int = 3
    backoff_s: float = 2.0  # the first wait; doubled after each failure, at most MAX_BACKOFF_S
    max_tokens: int | None = None  # a cap on each reply's length; None: the endpoint's own limit


class ChatClient:
    def __init__(self, config: LLMConfig, http: httpx.AsyncClient) -> None:
        self.config, self.http = config, http

    async def complete(self, messages: list[dict[str, str]]) -> str:
        body: dict[str, Any] = {"model": self.config.model, "messages": messages,
                                "temperature": self.config.temperature}
        if self.config.max_tokens is not None:
            body["max_tokens"] = self.config.max_tokens
        headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
        try:
            response = await self.http.post(self.config.url.rstrip("/") + "/chat/completions", json=body,
                                            headers=headers, timeout=self.config.timeout_s)
            if response.status_code != 200:
                raise LLMError(f"HTTP {response.status_code}: {response.text[:200]}")
            content = response.json()["choices"][0]["message"]["content"]
        except httpx.HTTPError as exc:
            raise LLMError(f"{type(exc).__name__}: {exc}") from exc
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise LLMError(f"not a chat completion: {exc!r}") from exc
        if not isinstance(content, str):
            raise LLMError("not a chat completion: content is not text")
        return content


class Synthesizer:
    """One seed row -> one AceCode row (`id`, `source`, `question`, `test_cases`, `inferences`,
    `context_messages`; the seed's other fields kept, e.g. its program for `filter-tests --reference-field`)."""

    def __init__(self, client: ChatClient, min_tests: int, question_field: str, program_field: str,
                 stats: Counter[str]) -> None:
        self.client, self.min_tests, self.stats = client, min_tests, stats
        self.question_field, self.program_field = question_field, program_field

    async def __call__(self, key: str, row: dict[str, Any]) -> Rows:
        question, program = row.get(self.question_field), row.get(self.program_field)
        if not (isinstance(question, str) and question.strip()) and not (isinstance(program, str) and program.strip()):
            raise RowError(f"neither {self.question_field} nor {self.program_field} holds text")
        made = await self._ask(prompt(question, program), entry_of(program))
        self.stats["tests kept"] += len(made.tests)
        self.stats["tests refused or repeated"] += made.refused_tests
        return [{**row, "id": row.get("id", key), "source": row.get("source", "synthesized"), "question": made.question,
                 "entry_point": made.entry_point, "test_cases": made.tests, "inferences": row.get("inferences", []),
                 "context_messages": [{"role": "user", "content": made.question}]}]

    async def _ask(self, messages: list[dict[str, str]], entry_hint: str | None) -> Synthesized:
        wait = self.client.config.backoff_s
        for attempt in range(self.client.config.retries + 1):
            try:
                return parse(await self.client.complete(messages), self.min_tests, entry_hint)
            except (LLMError, Refused) as exc:
                self.stats["replies refused or failed"] += 1
                if attempt == self.client.config.retries:
                    raise RowError(f"after {attempt + 1} attempts: {exc}") from exc
            await asyncio.sleep(wait)
            wait = min(wait * 2, MAX_BACKOFF_S)
        raise AssertionError("unreachable")
