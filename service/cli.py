"""`acecoder-reward`: the command line entry point."""

from __future__ import annotations

import argparse
import logging

from service.settings import Settings


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
    args = parser.parse_args(argv)
    settings = Settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per reward-model batch otherwise
    if args.command == "serve":
        _serve(settings, args.host or settings.host, args.port or settings.port)
    elif args.command == "worker":
        from service.worker import run_worker

        if args.concurrency is not None and args.concurrency < 1:
            parser.error("--concurrency must be at least 1")
        run_worker(settings, args.concurrency, args.name)
    else:
        from service.worker import check_health

        raise SystemExit(check_health(settings, args.name))


def _serve(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    from service.app import create_app

    uvicorn.run(create_app(settings), host=host, port=port, log_level=settings.log_level, access_log=False)


if __name__ == "__main__":
    main()
