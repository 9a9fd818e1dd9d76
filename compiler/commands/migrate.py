"""`fsmc migrate --db URL SPEC_OR_DIR... [--dry-run | --apply]`: a store against the specs."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from fsmc.compiler.migration import (
    Plan,
    blocked_summary,
    describe,
    move_lines,
    plan,
)
from fsmc.compiler.project import UsageError, check

from .common import positive_int, report

HELP = """\
Compare the rows of a store (fsmc.runtime.store) with the specs: the rows of each machine per
state, every state that has rows but is neither declared nor moved (`moved Old -> New`) with a
few of its resource ids, and rows of machines no spec declares. Counting runs on the database
server (GROUP BY); nothing is read row by row.

Without --apply nothing changes (--dry-run says so explicitly). --apply moves the rows of each
moved state in ONE transaction, batch by batch: per row a compare-and-set on its version (a row
another writer changed meanwhile is re-read, never overwritten), version + 1, and an outbox
event (`Migrated`, tag `migration`, topic Machine.Old.Migrated.New) that the relay delivers
like any transition. It also brings the store's own schema up to date. Nothing moves while any
row is stranded or belongs to a machine no spec declares.

Exit status: 0 when nothing is stranded (and, after --apply, every row is in a declared state),
1 when rows are stranded, belong to undeclared machines, or entered a moved state while
--apply ran, 2 on usage errors (specs with errors, a database that cannot be read).

examples:
  fsmc migrate --db sqlite:///fsmc.db specs/
  fsmc migrate --db postgresql+psycopg://fsmc@db/cloud specs/ --apply
"""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("migrate", help="a store's rows against the specs; move "
                                   "rows out of removed states", description=HELP,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", metavar="SPEC_OR_DIR")
    parser.add_argument("--db", required=True, metavar="URL",
                        help="the store's SQLAlchemy URL (sqlite:///fsmc.db, "
                             "postgresql+psycopg://...)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true",
                      help="say what --apply would move; change nothing (the default)")
    mode.add_argument("--apply", action="store_true",
                      help="move the rows of moved states, in one transaction")
    parser.add_argument("--batch", type=positive_int, default=2000,
                        help="rows per batch of --apply (default 2000)")
    parser.add_argument("--examples", type=positive_int, default=3, metavar="N",
                        help="resource ids shown per stranded state (default 3)")
    parser.set_defaults(run=run, format="text", color="auto")


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        from fsmc.runtime import store_migrate
        from fsmc.runtime.store_schema import STORE_SCHEMA, StoreSchemaError, stored_version
        from sqlalchemy.exc import SQLAlchemyError
    except ImportError as error:
        raise UsageError(f"fsmc migrate needs SQLAlchemy ({error}): pip install "
                         "'fsmc[store]' (and 'fsmc[postgres]' for PostgreSQL)") from error

    project = check(args.paths)
    if not project.ok:
        report(project, args, out)
        err.write("fsmc: fix the errors in the specs first\n")
        return 2
    machines = [(machine, spec.path) for spec in project.specs for machine in spec.machines]
    try:
        engine = store_migrate.open_engine(args.db)
    except (SQLAlchemyError, ValueError, ImportError) as error:
        raise UsageError(f"--db {args.db}: {error}") from error
    where = engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect() as conn:
            version = stored_version(conn)
            if version is None:
                raise UsageError(f"{where}: no fsmc store here (no fsmc_machines table)")
            if version > STORE_SCHEMA:
                raise UsageError(f"{where}: written by a newer fsmc (store schema {version}; "
                                 f"this fsmc knows up to {STORE_SCHEMA}): upgrade fsmc")
            found = plan(machines, store_migrate.census(conn))
            examples = _examples(conn, found, args.examples)
        schema = (f"store schema {version}" if version == STORE_SCHEMA else
                  f"store schema {version}, older than this fsmc's {STORE_SCHEMA}: --apply "
                  "migrates it")
        out.write(f"store {where} ({schema})\n")
        for line in describe(found, examples):
            out.write(line + "\n")
        if found.blocked:
            for line in blocked_summary(found):
                out.write(line + "\n")
            return 1
        if not args.apply:
            return _dry_run(found, version < STORE_SCHEMA, out)
        results = store_migrate.apply_moves(engine, found.moves, batch=args.batch,
                                            where=where)
        moved = {(r.machine, r.source): (r.moved, r.left) for r in results}
        if found.moves:
            out.write("moves:\n")
            for line in move_lines(found, moved):
                out.write(line + "\n")
        total = sum(r.moved for r in results)
        out.write(f"applied in one transaction: {total:,} row{'' if total == 1 else 's'} "
                  f"moved (each version + 1 and one `{store_migrate.MIGRATED}` outbox event)"
                  + ("; store schema migrated to " + str(STORE_SCHEMA)
                     if version < STORE_SCHEMA else "") + "\n")
        with engine.connect() as conn:
            after = plan(machines, store_migrate.census(conn))
        late = after.rows_to_move()
        if late or after.blocked:
            out.write(f"{late:,} rows entered moved states while --apply ran (a process "
                      "still running the old spec?): run fsmc migrate again\n")
            return 1
        out.write("the store matches the specs\n")
        return 0
    except StoreSchemaError as error:
        raise UsageError(str(error)) from error
    except SQLAlchemyError as error:
        raise UsageError(f"{where}: {_first_line(error)}") from error
    finally:
        engine.dispose()


def _dry_run(found: Plan, old_schema: bool, out: TextIO) -> int:
    rows = found.rows_to_move()
    if found.moves:
        out.write("moves:\n")
        for line in move_lines(found):
            out.write(line + "\n")
    if rows or old_schema:
        out.write(f"dry run: nothing changed; --apply moves {rows:,} row"
                  f"{'' if rows == 1 else 's'} in one transaction"
                  + (" and migrates the store schema" if old_schema else "") + "\n")
    else:
        out.write("the store matches the specs\n")
    return 0


def _examples(conn: Any, found: Plan, limit: int) -> dict[tuple[str, str | None], list[str]]:
    from fsmc.runtime.store_migrate import examples

    shown: dict[tuple[str, str | None], list[str]] = {}
    for machine in found.machines:
        for state in machine.stranded:
            shown[(machine.machine, state.state)] = examples(conn, machine.machine,
                                                             [state.state], limit)
    for name, _ in found.undeclared:
        shown[(name, None)] = examples(conn, name, [], limit)
    return shown


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0]
