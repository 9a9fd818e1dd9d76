"""`fsmc notify serve`: run the notification service; `fsmc notify hash-key`: the hash of an
API key as the config stores it (see docs/notify.md)."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from typing import Any, TextIO

from .common import add_actions

HELP = """\
serve: run the notification service over HTTP (uvicorn): tenants authenticate with their API
key (Authorization: Bearer KEY) and follow their own resources' events at GET /v1/events
(Server-Sent Events; resume with Last-Event-ID) or subscribe webhooks at /v1/subscriptions
(kept in --db, signed, retried, dead-lettered). With --amqp, the events come from the
RabbitMQ exchange fsmc.events through the durable queue named in the config ([broker] queue,
default fsmc.notify; one active consumer at a time): an event is acknowledged only once it is
recorded in --db, and events published while the service is down wait in the queue. --db is an
SQLite file (one instance) or a PostgreSQL URL (postgresql://...): several instances on one
database and one broker share the queue, the replay log and the webhook lanes, behind any load
balancer. Without --amqp, only what this process's bus carries.

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
    serve.add_argument("--db", default="notify.db", metavar="FILE|URL",
                       help="the service's database: an SQLite file (default notify.db) or a "
                            "PostgreSQL URL shared by several instances")
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
    from fsmc.notify.database import database_errors, shown_url
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
    refusals: tuple[type[Exception], ...] = (*database_errors(), OSError)
    try:
        app = create_app(bus, config, subscriptions=args.db)
    except refusals as error:
        listener.close()
        err.write(f"fsmc: error: --db {shown_url(args.db)}: cannot use it for the service's "
                  f"database: {str(error).strip()}\n")
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
            consumer = AmqpConsumer(
                args.amqp, config.queue, ["#"], record=app.state.journal.record,
                queue_arguments={"x-queue-type": config.queue_type,
                                 "x-single-active-consumer": True})
        except ValueError as error:
            listener.close()
            err.write(f"fsmc: error: --amqp: {error}\n")
            return 2
        app.state.before_close.append(consumer.close)  # no recording into a closed database
        source = f", events from {redacted(args.amqp)} queue {config.queue}"
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
