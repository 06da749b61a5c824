"""`acecoder-reward`: the command line entry point."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from acecoder_reward.service import data_cli
from acecoder_reward.service.datasets import FORMATS
from acecoder_reward.service.logs import configure_logging
from acecoder_reward.service.settings import Settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="acecoder-reward", description="AceCoder reward service")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP gateway (embedded sandbox pool, or queue mode with "
                                         "ACECODER_REDIS_URL)")
    serve.add_argument("--host", help="listen address (default: ACECODER_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default: ACECODER_PORT or 8000)")
    worker = sub.add_parser("worker", help="run a sandbox worker on the Redis queue (needs ACECODER_REDIS_URL)")
    worker.add_argument("--concurrency", type=int, help="programs run at once (default: ACECODER_POOL_SIZE, "
                                                        "0 = one per CPU plus one)")
    worker.add_argument("--name", help="consumer name, unique per worker (default: HOSTNAME-PID)")
    health = sub.add_parser("worker-health", help="exit 0 while a worker on this host (or --name) is alive")
    health.add_argument("--name", help="the worker's name (default: any worker on this host)")
    score = sub.add_parser("score", help="score a file of items ({question?, response, tests?}) or of a dataset's "
                                         "rows through a running service (--url) or in process")
    _common(score)
    score.add_argument("--format", choices=FORMATS, default="auto",
                       help="the rows' dataset (default: recognised per row by its fields)")
    score.add_argument("--response-field", default="response", metavar="COLUMN",
                       help="the column holding the response: text, or a list (one item each), e.g. solutions "
                            "(APPS, TACO, CodeContests), canonical_solution (HumanEval), code (MBPP)")
    score.add_argument("--reward", choices=["tests", "model", "combined"], default="tests")
    score.add_argument("--tests-reward", choices=["pass_rate", "binary"], default="pass_rate")
    score.add_argument("--compare", choices=["tokens", "lines", "exact"],
                       help="how stdout is compared in input/output tests (default: the service's, tokens)")
    score.add_argument("--untrusted-tests", choices=["exclude", "count", "fail"],
                       help="how tests judged in the sandbox count (default: the service's)")
    score.add_argument("--batch", type=int, default=32, help="items per request")
    bon = sub.add_parser("best-of-n", help="rank the candidates of each problem in a JSONL file ({question, "
                                           "candidates, tests?}) and report how often the pick passes")
    _common(bon)
    bon.add_argument("--rank-by", choices=["model", "tests", "tests_then_model"],
                     help="default: tests_then_model with tests and a reward model, tests with tests, else model")
    bon.add_argument("--plot", type=Path, help="draw selection accuracy against N into this PNG (matplotlib)")
    bon.add_argument("--seed", type=int, default=0, help="seed of the random-candidate baseline")
    data = sub.add_parser("data", help="AceCoder's data pipeline: synthesize-tests, filter-tests, pass-rates, pairs, "
                                       "hard (JSONL or Parquet in, resumable JSONL out)")
    data_cli.add_arguments(data)
    args = parser.parse_args(argv)
    settings = Settings()
    configure_logging(settings)
    if args.command == "serve":
        _serve(settings, args.host or settings.host, args.port or settings.port)
    elif args.command == "worker":
        from acecoder_reward.service.worker import run_worker

        if args.concurrency is not None and args.concurrency < 1:
            parser.error("--concurrency must be at least 1")
        run_worker(settings, args.concurrency, args.name)
    elif args.command in ("score", "best-of-n"):
        _batch(args, settings)
    elif args.command == "data":
        logging.getLogger().setLevel(max(logging.WARNING, logging.getLogger().level))  # the progress bar speaks
        data_cli.run(args, settings)
    else:
        from acecoder_reward.service.worker import check_health

        raise SystemExit(check_health(settings, args.name))


def _common(command: argparse.ArgumentParser) -> None:
    command.add_argument("file", type=Path, help="input JSONL (.gz ok) or Parquet (the [datasets] extra)")
    command.add_argument("--out", type=Path, help="results JSONL (default: stdout)")
    command.add_argument("--url", help="a running service; default: score in this process, configured by the "
                                       "ACECODER_* settings (sandbox pool; reward model if ACECODER_RM_BACKEND)")
    command.add_argument("--token", help="bearer token for --url (default: ACECODER_REWARD_TOKEN)")
    command.add_argument("--concurrency", type=int, default=4, help="requests in flight")


def _batch(args: argparse.Namespace, settings: Settings) -> None:
    import os

    from acecoder_reward.service import batch_cli

    logging.getLogger().setLevel(max(logging.WARNING, logging.getLogger().level))  # the progress bar speaks
    token = args.token or os.environ.get("ACECODER_REWARD_TOKEN")
    if args.command == "score":
        options = batch_cli.ScoreOptions(reward=args.reward, tests_reward=args.tests_reward, batch=args.batch,
                                         format=args.format, response_field=args.response_field,
                                         compare=args.compare, untrusted_tests=args.untrusted_tests)
        batch_cli.run_score(settings, args.file, args.out, args.url, token, options, args.concurrency)
    else:
        batch_cli.run_best_of_n(settings, args.file, args.out, args.url, token, args.rank_by, args.concurrency,
                                args.plot, args.seed)


def _serve(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    from acecoder_reward.service.app import create_app
    from acecoder_reward.service.http_protocol import OneWriteHttpToolsProtocol

    # log_config=None: uvicorn's records go through our handler (text or JSON, with request ids); the access
    # log is ours too (service/request_ids.py). No proxy headers: nothing here uses the client's address, and
    # reading X-Forwarded-* cost every request a middleware. Responses leave in one socket write each.
    uvicorn.run(create_app(settings), host=host, port=port, log_level=settings.log_level, access_log=False,
                log_config=None, proxy_headers=False, http=OneWriteHttpToolsProtocol)


if __name__ == "__main__":
    main()
