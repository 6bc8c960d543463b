"""`lsd status`: ask a running gateway how it is (`GET /status` and `GET /health`), over HTTP with httpx.

The one command that talks to a gateway rather than to PostgreSQL; httpx stays out of the request path
(providers are reached through lsd.providers.connections).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

import httpx
import orjson

from lsd.cli.options import Subparsers
from lsd.exits import EXIT_DATABASE, EXIT_OK, CommandExit

DEFAULT_URL = "http://127.0.0.1:3000"
EXIT_UNREACHABLE = 6  # the gateway did not answer, or not as LSD answers


def add_parser(subparsers: Subparsers) -> None:
    default = os.environ.get("LSD_URL", DEFAULT_URL)
    p = subparsers.add_parser(
        "status",
        help="ask a running gateway for its version, config hash and database health",
        description="Exit status: 0 ok, 3 the gateway cannot reach PostgreSQL, 6 the gateway did not answer.",
    )
    p.add_argument("--url", default=default, help=f"the gateway's base URL (default LSD_URL or {DEFAULT_URL})")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for each answer (default 5)")
    p.add_argument("--json", action="store_true", help="one JSON object: the answers of /status and /health")


def run(args: argparse.Namespace) -> int:
    base = args.url.rstrip("/")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its INFO line per request is noise on a CLI's stderr
    with httpx.Client(timeout=args.timeout) as client:
        status = _get(client, f"{base}/status", ok=(200,))
        health = _get(client, f"{base}/health", ok=(200, 503))  # 503: the gateway answers, PostgreSQL does not
    postgres = health.get("postgres")
    if args.json:
        sys.stdout.write(orjson.dumps({"url": base, "status": status, "health": health}).decode() + "\n")
    else:
        sys.stdout.write(
            f"gateway {base}: {status.get('status')}, lsd {status.get('version')}, config {status.get('config_hash')}\n"
            f"postgres: {postgres}\n"
        )
    return EXIT_OK if postgres == "ok" else EXIT_DATABASE


def _get(client: httpx.Client, url: str, *, ok: tuple[int, ...]) -> dict[str, Any]:
    try:
        answer = client.get(url)
    except httpx.HTTPError as exc:
        raise CommandExit(EXIT_UNREACHABLE, f"no answer from {url}: {str(exc) or type(exc).__name__}") from None
    if answer.status_code not in ok:
        raise CommandExit(EXIT_UNREACHABLE, f"{url} answered {answer.status_code}")
    try:
        body = orjson.loads(answer.content)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        raise CommandExit(EXIT_UNREACHABLE, f"{url} did not answer a JSON object: is it an LSD gateway?")
    return body
