"""`fsmc notify serve`: run the notification service; `fsmc notify hash-key`: the hash of an
API key as the config stores it (see docs/notify.md)."""

from __future__ import annotations

import argparse
import getpass
import logging
import sqlite3
import sys
from typing import Any, TextIO

from .common import add_actions

HELP = """\
serve: run the notification service over HTTP (uvicorn): tenants authenticate with their API
key (Authorization: Bearer KEY) and follow their own resources' events at GET /v1/events
(Server-Sent Events; resume with Last-Event-ID) or subscribe webhooks at /v1/subscriptions
(kept in --db, signed, retried, dead-lettered). With --amqp, the events come from the
RabbitMQ exchange fsmc.events (each service process reads a queue of its own, so several can
run behind a load balancer); without it, only what this process's bus carries.

CONFIG is TOML: [[tenants]] id + api_keys, [admin] api_keys (keys stored as
"sha256:<hex digest>"), optional [limits] and [webhooks]; see docs/notify.md.

hash-key: print the hash of an API key as api_keys stores it (sha256:<hex>). The key is read
from a prompt that does not show it (typed twice), or one key a line from stdin when it is
not a terminal; never from the command line, where other users (ps) and the shell history
would see it.

examples:
  fsmc notify serve --config notify.toml --amqp amqp://guest:guest@localhost:5672/%2F
  curl -N -H "Authorization: Bearer KEY" http://127.0.0.1:8080/v1/events
  fsmc notify hash-key
  openssl rand -hex 24 | tee acme.key | fsmc notify hash-key
"""


def add_parser(subparsers: Any) -> None:
    actions = add_actions(subparsers, "notify", "the notification service", HELP)
    serve = actions.add_parser("serve", help="run the service")
    serve.add_argument("--config", required=True, metavar="FILE", help="the TOML config")
    serve.add_argument("--amqp", metavar="URL", help="follow the broker's events")
    serve.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    serve.add_argument("--db", default="notify.db", metavar="FILE",
                       help="SQLite file of the webhook subscriptions (default notify.db)")
    serve.set_defaults(run=run_serve)
    hashing = actions.add_parser("hash-key", help="hash an API key for the config")
    hashing.add_argument("key", nargs="?", help=argparse.SUPPRESS)  # refused with the reason
    hashing.set_defaults(run=run_hash_key)


def run_hash_key(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """One `sha256:<hex>` line for each key read (surrounding whitespace is not part of a
    key: the service strips it from the header too)."""
    from fsmc.notify.config import hash_key

    if args.key is not None:
        err.write("fsmc: error: hash-key does not take the key as an argument: other users "
                  "see it in the process list and the shell keeps it in its history; type "
                  "it at the prompt, or pipe it in: fsmc notify hash-key < acme.key\n")
        return 2
    if sys.stdin.isatty():
        key = getpass.getpass("API key (not shown): ").strip()
        if key and getpass.getpass("again: ").strip() != key:
            err.write("fsmc: error: the two keys typed differ; nothing hashed\n")
            return 1
        keys = [key] if key else []
    else:
        keys = [line.strip() for line in sys.stdin if line.strip()]
    if not keys:
        err.write("fsmc: error: no key given: type one at the prompt, or pipe keys in, one a "
                  "line\n")
        return 2
    for key in keys:
        out.write(hash_key(key) + "\n")
    return 0


def run_serve(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        from fsmc.notify.app import create_app
        from fsmc.notify.config import ConfigError, load_config
        from fsmc.notify.server import bind, serve
    except ImportError as error:
        err.write(f"fsmc: error: the service needs its extra: pip install 'fsmc[notify]' "
                  f"({error})\n")
        return 2
    from fsmc.runtime import EventBus

    try:
        config = load_config(args.config)
    except ConfigError as error:
        err.write(f"fsmc: error: {error}\n")
        return 2
    try:
        listener = bind(args.host, args.port)
    except OSError as error:
        err.write(f"fsmc: error: cannot listen on {args.host}:{args.port}: "
                  f"{error.strerror or error}\n")
        return 2
    bus = EventBus()
    try:
        app = create_app(bus, config, subscriptions=args.db)
    except (sqlite3.Error, OSError) as error:
        listener.close()
        err.write(f"fsmc: error: --db {args.db}: cannot use it for the subscriptions: "
                  f"{error}\n")
        return 2
    consumer, source = None, ""
    if args.amqp:
        try:
            from fsmc.runtime.amqp import AmqpConsumer
            from fsmc.runtime.amqp.url import redacted
        except ImportError as error:
            listener.close()
            err.write(f"fsmc: error: --amqp needs its extra: pip install 'fsmc[amqp]' "
                      f"({error})\n")
            return 2

        logging.getLogger("pika").setLevel(logging.CRITICAL)
        try:
            consumer = AmqpConsumer(args.amqp, None, ["#"], bus=bus)
        except ValueError as error:
            listener.close()
            err.write(f"fsmc: error: --amqp: {error}\n")
            return 2
        source = f", events from {redacted(args.amqp)}"
    tenants = len(config.tenants)
    err.write(f"fsmc: notification service on http://{args.host}:{args.port}/ "
              f"({tenants} tenant{'' if tenants == 1 else 's'}{source})\n")
    try:
        serve(app, listener)
    finally:
        if consumer is not None:
            consumer.close()
        bus.close()
        listener.close()
    return 0
