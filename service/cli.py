"""`acecoder-reward`: the command line entry point."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from service.settings import Settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="acecoder-reward", description="AceCoder reward service")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP gateway (embedded sandbox pool)")
    serve.add_argument("--host", help="listen address (default: ACECODER_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default: ACECODER_PORT or 8000)")
    args = parser.parse_args(argv)
    settings = Settings()
    if args.command == "serve":
        _serve(settings, args.host or settings.host, args.port or settings.port)


def _serve(settings: Settings, host: str, port: int) -> None:
    from service.app import create_app

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=host, port=port, log_level=settings.log_level, access_log=False)


if __name__ == "__main__":
    main()
