"""`acecoder-reward data COMMAND INPUT --out OUTPUT`: AceCoder's data pipeline, each step a command.

  synthesize-tests  seeds -> AceCode rows with a question and assert tests, from an OpenAI-compatible LLM
  filter-tests      keep the tests a reference solution passes; drop questions left with < --min-tests
  pass-rates        write each completion's pass rate into `inferences[j].pass_rate`
  pairs             AceCodePair's preference pairs
  hard              the hard subset (mean pass rate and spread against the medians)

Input: JSONL (.gz too) or Parquet, read by service/datasets.py. Output: JSONL, resumable (service/data/ledger.py:
a rerun with the same --out skips the rows already handled, by row id). The two commands that run programs do it
through the service's reward path, in process (the embedded sandbox pool, configured by the ACECODER_* settings)
or on a running service (--url). Each prints a progress bar and, at the end, a summary.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from acecoder_reward.service.settings import Settings


def add_arguments(data: argparse.ArgumentParser) -> None:
    sub = data.add_subparsers(dest="data_command", required=True)
    synth = _command(sub, "synthesize-tests", "seeds ({id?, question} or {id?, program}) -> AceCode rows, from an "
                                              "OpenAI-compatible chat endpoint")
    synth.add_argument("--llm-url", required=True, help="the API base, e.g. http://HOST:8000/v1")
    synth.add_argument("--model", required=True, help="the model name the endpoint serves")
    synth.add_argument("--llm-api-key", help="bearer key for --llm-url (default: OPENAI_API_KEY)")
    synth.add_argument("--question-field", default="question", metavar="COLUMN")
    synth.add_argument("--program-field", default="program", metavar="COLUMN",
                       help="a seed program to write the question for (used first when present)")
    synth.add_argument("--retries", type=int, default=3, help="asks again after a failed or refused reply")
    synth.add_argument("--retry-backoff-s", type=float, default=2.0, help="first wait between tries (doubles)")
    synth.add_argument("--min-tests", type=int, default=5, help="valid tests a reply needs")
    synth.add_argument("--max-tokens", type=int, help="a cap on each reply's length (default: the endpoint's)")
    filt = _command(sub, "filter-tests", "keep the tests a reference solution passes")
    which = filt.add_mutually_exclusive_group(required=True)
    which.add_argument("--reference-field", metavar="COLUMN", help="the column holding the reference program")
    which.add_argument("--reference-model", metavar="NAME", help="the first of this model's `inferences`")
    filt.add_argument("--min-tests", type=int, default=5, help="drop a question left with fewer kept tests")
    _service(filt)
    rates = _command(sub, "pass-rates", "each completion's pass rate into inferences[j].pass_rate")
    rates.add_argument("--batch", type=int, default=32, help="completions per request")
    _service(rates)
    pairs = _command(sub, "pairs", "AceCodePair preference pairs from rows with pass rates")
    pairs.add_argument("--wrap", choices=["none", "training"], default="none",
                       help="training: the instruction and answer wrapping AceCodeRM was trained on")
    _command(sub, "hard", "the hard subset: mean pass rate <= median, then std >= median std")


def _command(sub: Any, name: str, summary: str) -> argparse.ArgumentParser:
    command: argparse.ArgumentParser = sub.add_parser(name, help=summary)
    command.add_argument("input", type=Path, help="JSONL (.gz ok) or Parquet (the [datasets] extra)")
    command.add_argument("--out", type=Path, required=True, help="JSONL; a rerun with the same --out resumes")
    command.add_argument("--concurrency", type=int, default=4, help="rows in flight")
    return command


def _service(command: argparse.ArgumentParser) -> None:
    command.add_argument("--url", help="a running service; default: in process, configured by ACECODER_* settings")
    command.add_argument("--token", help="bearer token for --url (default: ACECODER_REWARD_TOKEN)")
    command.add_argument("--no-cache", action="store_true", help="run every completion, even one identical to "
                         "another (the test-result cache is on by default: a question's repeated completions run "
                         "once)")


def run(args: argparse.Namespace, settings: Settings) -> None:
    from acecoder_reward.service.data.commands import run_command  # httpx, tqdm, the reward path: only when used

    for name in ("concurrency", "batch", "retries", "min_tests", "max_tokens"):
        value = getattr(args, name, None)
        if value is not None and value < (0 if name in ("retries", "min_tests") else 1):
            raise SystemExit(f"--{name.replace('_', '-')}: {value} is out of range")
    run_command(args, settings)
