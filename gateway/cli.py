"""`ocgateway`: serve the gateway, run the local OrderCloud sandbox or the demo, and operate the
tracker and decision tables."""

from __future__ import annotations

import argparse
import logging.config
import os
import shutil
import sys
import tempfile
from typing import Any

import uvicorn

from console.commands import register as register_users
from decisions.commands import register as register_decisions
from gateway.compose import open_store
from gateway.doctor import register as register_doctor
from gateway.settings import ConfigError, Settings, load_settings
from gateway.shutdown import in_flight_timeout
from gateway.storecommands import register as register_store
from tracking.backfill.command import register as register_backfill
from tracking.commands import register as register_tracking


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    shared = _metrics_dir(args.workers) if settings.metrics else None
    if settings.metrics and settings.metrics_port:
        _serve_metrics(args.host, settings.metrics_port, shared)
    try:
        _run(args, settings)
    finally:
        if shared:
            shutil.rmtree(shared, ignore_errors=True)
    return 0


def _metrics_dir(workers: int) -> str | None:
    """Several workers: prometheus-client's multiprocess mode, in a fresh directory made before
    the workers start (they inherit the variable; each writes its own files there). This parent
    process never imports `gateway.metrics`: it would write files of its own."""
    if workers <= 1:
        return None
    path = tempfile.mkdtemp(prefix="ocgw-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


def _serve_metrics(host: str, port: int, shared: str | None) -> None:
    """`OCGW_METRICS_PORT`: a small /metrics server thread in this process: the workers' parent
    reading their files (--workers N), or the one process."""
    from prometheus_client import REGISTRY, CollectorRegistry, multiprocess, start_http_server

    registry = REGISTRY
    if shared:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=shared)
    start_http_server(port, addr=host, registry=registry)


def _run(args: argparse.Namespace, settings: Settings) -> None:
    uvicorn.run(
        "gateway.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=log_config(settings),  # applied in every worker process too
        access_log=False,  # the gateway's own access log redacts credentials
        proxy_headers=False,  # the proxy handles X-Forwarded-* itself
        server_header=False,
        date_header=False,
        lifespan="on",
        timeout_graceful_shutdown=in_flight_timeout(
            settings.drain_seconds, settings.shutdown_timeout
        ),
    )


def log_config(settings: Settings) -> dict[str, Any]:
    """Logging for every command and worker: one format (`OCGW_LOG_FORMAT`), the configured
    level, the access log on only when asked for, and outbound HTTP client chatter kept out."""
    level = settings.log_level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {"()": "gateway.logs.PlainFormatter"},
            "json": {"()": "gateway.logs.JsonFormatter"},
        },
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": settings.log_format}
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            "ocgateway.access": {"level": "INFO" if settings.access_log else "WARNING"},
            "httpx": {"level": "WARNING"},
            "uvicorn": {"level": "WARNING" if level == "INFO" else level},
        },
    }


def _sandbox(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.sandbox import serve

    serve(args.host, args.port)
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.demo import run

    return run()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ocgateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gateway (configured by OCGW_* variables)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="processes; one per core")
    serve.set_defaults(func=_serve)

    sandbox = commands.add_parser("sandbox", help="run the local OrderCloud sandbox")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8100)
    sandbox.set_defaults(func=_sandbox)

    demo = commands.add_parser("demo", help="run a scripted shopper journey through the gateway")
    demo.set_defaults(func=_demo)

    register_tracking(commands, open_store)
    register_backfill(commands)
    register_decisions(commands, open_store)
    register_users(commands, open_store)
    register_doctor(commands)
    register_store(commands, open_store)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"ocgateway: {exc}", file=sys.stderr)
        return 2
    logging.config.dictConfig(log_config(settings))
    return int(args.func(args, settings) or 0)


if __name__ == "__main__":
    sys.exit(main())
