"""A user's own usage rules reach `fsmc usage`: from a rules file ([[rules]] tables, or
`include = ["module:attribute"]` naming a module outside fsmc) and from an installed package's
`fsmc.usage_rules` entry point; the report shows every rule's measure, says which stored
events no rule counts, and every mistake is one line saying where."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fsmc.compiler.cli import main
from fsmc.contrib.audit import AuditTrail
from fsmc.contrib.usage import RULES, UsageMeter, UsageRule
from fsmc.contrib.usage_rules import ENTRY_POINT_GROUP, RulesError, find_rules, import_rules
from fsmc.runtime import StateChanged

from tests.test_usage import ev, vm_events

BILLING = '''\
from fsmc.contrib.usage import UsageRule

RULES = (UsageRule("backup", "Backup", frozenset({"Stored"}), frozenset({"Deleted"}), False,
                   "backup GB-hours", "GB-hours", size_key="size_gb"),)
'''
BACKUP_TABLE = '''\
[[rules]]
usage_type = "backup"
machine = "Backup"
starts = ["Stored"]
stops = ["Deleted"]
unit = "GB-hours"
label = "backup GB-hours"
size_key = "size_gb"
'''


def backup_events() -> list[StateChanged]:
    """A 50 GB backup stored from 2 h to 12 h: 500 GB-hours."""
    a = {"account": "acme", "size_gb": 50}
    return [ev("Backup", "bk-1", "Creating -Finish-> Stored", 2, **a),
            ev("Backup", "bk-1", "Stored -Delete-> Deleted", 12, **a)]


def backup_rule() -> UsageRule:
    return UsageRule("backup", "Backup", frozenset({"Stored"}), frozenset({"Deleted"}), False,
                     "backup GB-hours", "GB-hours", size_key="size_gb")


def metered(tmp_path: Path, rules: tuple[UsageRule, ...]) -> str:
    db = tmp_path / "usage.db"
    with UsageMeter(db, rules=rules) as meter:
        for event in vm_events() + backup_events():
            meter.record(event)
    return str(db)


def report(db: str, *options: str, capsys: pytest.CaptureFixture[str]) -> list[list[str]]:
    assert main(["usage", "report", "--db", db, "--from", "2025-03-01", "--to", "2025-03-02",
                 *options]) == 0, capsys.readouterr().err
    return [line.split() for line in capsys.readouterr().out.splitlines()]


def test_a_rules_file_with_a_table_shows_the_users_measure(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = metered(tmp_path, (*RULES, backup_rule()))
    (tmp_path / "billing.toml").write_text(BACKUP_TABLE, encoding="utf-8")
    rows = report(db, "--rules", str(tmp_path / "billing.toml"), capsys=capsys)
    assert rows[0][-5:] == ["1", "account,", "2", "usage", "records"]
    assert rows[2] == ["account", "running", "VM", "hours", "volume", "GB-hours", "public",
                       "IP", "hours", "backup", "GB-hours", "resources"]
    assert rows[3] == ["acme", "7.50", "0.00", "0.00", "500.00", "2"]
    assert ["bk-1", "acme", "10.00", "50", "500.00"] in rows
    assert ["Backup", "resources", "by", "backup", "GB-hours", "(top", "1)"] in rows


def test_a_rules_file_may_include_a_module_of_the_user_next_to_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "mybilling.py").write_text(BILLING, encoding="utf-8")
    (tmp_path / "billing.toml").write_text('cloudstack = false\ninclude = ["mybilling:RULES"]\n',
                                           encoding="utf-8")
    rules = find_rules(tmp_path / "billing.toml")
    assert [rule.usage_type for rule in rules] == ["backup"]
    assert "mybilling" not in [entry for entry in sys.path if entry.endswith("mybilling")]
    db = metered(tmp_path, rules)
    rows = report(db, "--rules", str(tmp_path / "billing.toml"), capsys=capsys)
    assert rows[2] == ["account", "backup", "GB-hours", "resources"]
    assert rows[3] == ["acme", "500.00", "1"]
    assert rows[0][-5:] == ["1", "account,", "1", "usage", "record"]


def test_events_no_rule_counts_are_named_instead_of_a_silent_zero(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = metered(tmp_path, (*RULES, backup_rule()))
    assert main(["usage", "report", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "not reported: 2 events of Backup: no usage rule counts that machine (give its " \
        "rules with --rules FILE, or install the package that declares them under the " \
        "fsmc.usage_rules entry point)" in out
    assert "backup" not in out.split("not reported")[0]


def test_load_keeps_the_events_of_the_users_rules(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trail = tmp_path / "audit.jsonl"
    with AuditTrail(trail) as audit:
        for event in vm_events() + backup_events():
            audit.write(event)
    (tmp_path / "billing.toml").write_text(BACKUP_TABLE, encoding="utf-8")
    db = str(tmp_path / "loaded.db")
    assert main(["usage", "load", "--db", db, "--rules", str(tmp_path / "billing.toml"),
                 str(trail)]) == 0
    assert "6 usage events read, 6 new" in capsys.readouterr().out
    rows = report(db, "--rules", str(tmp_path / "billing.toml"), capsys=capsys)
    assert rows[3] == ["acme", "7.50", "0.00", "0.00", "500.00", "2"]


def install_entry_point(site: Path) -> None:
    """A package as pip leaves it: its module and a dist-info declaring the entry point."""
    (site / "mybilling.py").write_text(BILLING, encoding="utf-8")
    info = site / "mybilling-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mybilling\nVersion: 1.0\n",
                                   encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nbackups = mybilling:RULES\n",
                                           encoding="utf-8")


def test_an_installed_packages_entry_point_is_found_without_any_option(
        tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    install_entry_point(site)
    db = metered(tmp_path, (*RULES, backup_rule()))
    script = textwrap.dedent(f"""\
        import sys
        sys.path.insert(0, {str(site)!r})
        from fsmc.compiler.cli import main
        sys.exit(main(["usage", "report", "--db", {db!r}]))
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    lines = [line.split() for line in done.stdout.splitlines()]
    assert lines[2][-3:] == ["backup", "GB-hours", "resources"]
    assert lines[3] == ["acme", "7.50", "0.00", "0.00", "500.00", "2"]
    assert "not reported" not in done.stdout
    (tmp_path / "twice.toml").write_text(BACKUP_TABLE, encoding="utf-8")
    script = script.replace('"--db"', f'"--rules", {str(tmp_path / "twice.toml")!r}, "--db"')
    twice = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           timeout=120, check=False)
    assert twice.returncode == 2
    assert "usage type 'backup' is defined twice: by entry point 'backups' " \
        "(mybilling:RULES) of group 'fsmc.usage_rules' and by " in twice.stderr


@pytest.mark.parametrize(("text", "message"), [
    ("[[rules]]\nusage_type = 'x'\n", "[[rules]] #1 (x): machine is missing"),
    ("[[rules]]\nusage_type = 'x'\nmachine = 'M'\nstarts = []\nstops = ['B']\n",
     "[[rules]] #1 (x): starts must be a non-empty list of state names"),
    ("[[rules]]\nusage_type = 'x'\nmachine = 'M'\nstarts = ['A']\nstops = ['B']\nunits = 'h'\n",
     "[[rules]] #1 (x): unknown key units; known: usage_type"),
    ("[[rules]]\nusage_type = 'running_vm'\nmachine = 'M'\nstarts = ['A']\nstops = ['B']\n",
     "usage type 'running_vm' is defined twice: by fsmc's CloudStack rules and by "),
    ("cloudstack = 'no'\n", "cloudstack must be true or false"),
    ("include = ['nosuchmodule_xyz:RULES']\n",
     "include item #1 (nosuchmodule_xyz:RULES): cannot import 'nosuchmodule_xyz'"),
    ("include = ['fsmc.contrib.usage']\n", "is not of the form module:attribute"),
    ("include = ['fsmc.contrib.usage:USAGE_TAG']\n",
     "not a UsageRule or an iterable of them, but str"),
    ("include = ['fsmc.contrib.usage:NOPE']\n", "module 'fsmc.contrib.usage' has no 'NOPE'"),
    ("rules = 3\n", "rules must be [[rules]] tables"),
    ("[[rules]\n", "not valid TOML"),
])
def test_mistakes_are_one_line_saying_where(tmp_path: Path, text: str, message: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RulesError, match="^" + str(path).replace(".", r"\.") if
                       "defined twice" not in message else "usage type"):
        find_rules(path)
    db = metered(tmp_path, RULES)
    assert main(["usage", "report", "--db", db, "--rules", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fsmc: error: ") and message in err and err.count("\n") == 1, err
    assert "Traceback" not in err


def test_import_rules_takes_a_rule_or_an_iterable_of_them() -> None:
    assert import_rules("fsmc.contrib.usage:RULES") == RULES
    with pytest.raises(RulesError, match=r"missing\.toml: cannot read the rules"):
        find_rules("missing.toml")
