"""The reward model's input, exactly as AceCodeRM reads it (https://github.com/TIGER-Lab/AceCoder).

The checkpoint's own chat template over `[user: question, assistant: program]`, no generation prompt. With
`training` wrapping, the question and program are wrapped the way AceCodePair's pairs were (the evalplus
instruction and response prefixes, fenced), which is closer to what the model was trained on.

Over-long inputs follow one explicit rule (`Overlong`): refuse the item, or keep the first tokens and the
template's closing tokens, cutting the end of the program, so the score is still read at the end-of-turn token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

INSTRUCTION_PREFIX = ("Please provide a self-contained Python script that solves the following problem in a "
                      "markdown code block:")
RESPONSE_PREFIX = ("Below is a Python script with a self-contained function that solves the problem and passes "
                   "corresponding tests:")
PromptFormat = Literal["chat", "training"]
Overlong = Literal["reject", "truncate"]


class PromptTooLong(ValueError):
    def __init__(self, tokens: int, max_tokens: int) -> None:
        super().__init__(f"the model input is {tokens} tokens; the model's context is {max_tokens}")
        self.tokens = tokens
        self.max_tokens = max_tokens


def messages(question: str, program: str, fmt: PromptFormat, first_test: str | None = None) -> list[dict[str, str]]:
    if fmt == "training":
        problem = question.strip() + (f"\n{first_test.strip()}" if first_test else "")
        question = f"{INSTRUCTION_PREFIX}\n```\n{problem}\n```\n"
        program = f"{RESPONSE_PREFIX}\n```python\n{program.strip()}\n```\n"
    return [{"role": "user", "content": question}, {"role": "assistant", "content": program}]


@dataclass
class PromptEncoder:
    """question + program -> token ids for the model, with the checkpoint's tokenizer (`transformers`)."""

    tokenizer: Any
    max_tokens: int
    fmt: PromptFormat = "chat"
    overlong: Overlong = "reject"

    def render(self, question: str, program: str, first_test: str | None = None) -> str:
        text: str = self.tokenizer.apply_chat_template(messages(question, program, self.fmt, first_test),
                                                        tokenize=False, add_generation_prompt=False)
        return text

    def encode(self, question: str, program: str, first_test: str | None = None) -> list[int]:
        text = self.render(question, program, first_test)
        # The rendered template already holds every special token; adding BOS/EOS would change the input.
        ids: list[int] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= self.max_tokens:
            return ids
        if self.overlong == "reject":
            raise PromptTooLong(len(ids), self.max_tokens)
        tail = self._closing_tokens()
        return ids[: self.max_tokens - len(tail)] + tail

    def _closing_tokens(self) -> list[int]:
        """The tokens the template puts after the assistant's content (`<|im_end|>\\n` for Qwen; the closing
        fence too with training wrapping), found by rendering a marker as the program."""
        marker = "\x00acecoder-split\x00"
        closing = self.render("q", marker).split(marker)[-1]
        tail: list[int] = self.tokenizer(closing, add_special_tokens=False)["input_ids"]
        return tail
