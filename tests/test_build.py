"""`fsmc build`: golden output, determinism, the drift gate, atomic writes, hostile input."""

from __future__ import annotations

import importlib.util
import io
import os
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
from fsmc.compiler.buildplan import display_path, project_root
from fsmc.compiler.cli import main
from fsmc.compiler.commands.build import DIFF_LINES, file_diff

from tests.conftest import ROOT

CASES = ROOT / "tests" / "cases" / "golden"
REGENERATE = os.environ.get("FSMC_REGEN_GOLDEN") == "1"


def build(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["build", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def load_module(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("case", sorted(p.stem for p in CASES.glob("*.fsm")))
def test_golden_output(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Generated code is pinned; set FSMC_REGEN_GOLDEN=1 to rewrite the expected files and
    review the diff. The spec sits in a project of its own (tmp_path), so the path the output
    names is `case.fsm` wherever the test runs from."""
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / f"{case}.fsm").write_bytes((CASES / f"{case}.fsm").read_bytes())
    monkeypatch.chdir(ROOT)
    out = tmp_path / "out"
    code, _, err = build([str(tmp_path / f"{case}.fsm"), "-o", str(out)], capsys)
    assert code == 0, err
    produced = {p.name: p.read_bytes() for p in out.glob("*.py") if p.name != "__init__.py"}
    for name, data in produced.items():
        expected = CASES / f"{name}.expected"
        if REGENERATE:
            expected.write_bytes(data)
        assert expected.exists(), f"no golden file {expected.name}; run with FSMC_REGEN_GOLDEN=1"
        assert data == expected.read_bytes(), f"{name} differs from {expected.name}"


def test_build_is_deterministic(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    first, second = tmp_path / "a", tmp_path / "b"
    assert build(["specs", "-o", str(first)], capsys)[0] == 0
    assert build(["specs", "-o", str(second)], capsys)[0] == 0
    def files(root: Path) -> list[str]:
        return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                      if p.is_file() and p.suffix != ".svg")

    names = files(first)
    assert names == files(second) and len(names) > 7
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_output_has_no_absolute_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside the specs' project the path is relative with `..`, never absolute."""
    monkeypatch.chdir(ROOT)
    assert build(["specs", "-o", str(tmp_path)], capsys)[0] == 0
    absolute = re.compile(r"(?<![.\w])" + re.escape(str(ROOT)))
    for path in [*tmp_path.glob("*.py"), *tmp_path.glob("diagrams/*.dot")]:
        assert not absolute.search(path.read_text()), path.name


def test_output_does_not_depend_on_the_working_directory(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Spec paths in the output are relative to the project root above the output directory
    (here the checkout, which holds pyproject.toml): `--check` from anywhere agrees."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, _, err = build(["--check", str(ROOT / "specs"), "-o", str(ROOT / "generated")], capsys)
    assert code == 0, err
    monkeypatch.chdir(ROOT / "specs")
    code, _, err = build(["--check", ".", "-o", "../generated"], capsys)
    assert code == 0, err
    assert "from specs/nic.fsm." in (ROOT / "generated" / "nic.py").read_text()
    assert "from specs/nic.fsm." in (ROOT / "generated" / "diagrams" / "nic.Nic.dot").read_text()


def test_project_root_is_found_from_the_output_directory(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "src" / "app").mkdir(parents=True)
    assert project_root(project / "src" / "app" / "machines") == project / "src" / "app"
    (project / "pyproject.toml").write_text("")
    assert project_root(project / "src" / "app" / "machines") == project
    assert display_path(project / "specs" / "vm.fsm", project) == "specs/vm.fsm"
    assert display_path(tmp_path / "vm.fsm", project) == "../vm.fsm"


def test_check_shows_a_unified_diff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "door.fsm"
    spec.write_text(DOOR)
    out = tmp_path / "out"
    assert build([str(spec), "-o", str(out), "--no-svg"], capsys)[0] == 0
    module = out / "door.py"
    module.write_text(module.read_text().replace('"Push"', '"Shove"', 1))
    code, _, err = build([str(spec), "-o", str(out), "--check"], capsys)
    assert code == 1
    assert f"fsmc: differs: {module}\n--- {module} (on disk)\n+++ {module} (as built)\n" in err
    assert re.search(r'^-.*"Shove"', err, re.M) and re.search(r'^\+.*"Push"', err, re.M)
    assert "@@ " in err and "out of date" in err


def test_a_long_diff_is_cut(tmp_path: Path) -> None:
    lines = file_diff(tmp_path / "x.py", b"".join(b"%d\n" % i for i in range(500)), b"")
    assert len(lines) == DIFF_LINES + 1 and lines[-1].startswith("... (")


DOOR = "machine Door {\n initial Shut\n state Open\n Shut -> Open : Push\n Open -> Shut : Pull\n}\n"
LAMP = "machine Lamp {\n initial Off\n state On\n Off -> On : Switch\n On -> Off : Switch\n}\n"


def test_building_one_spec_keeps_what_the_others_wrote(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Only files of a spec that no longer exists (or of a machine its spec no longer has)
    are stale; each removed file is named."""
    (tmp_path / "pyproject.toml").write_text("")
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "door.fsm").write_text(DOOR)
    (specs / "lamp.fsm").write_text(LAMP)
    out = tmp_path / "pkg"
    assert build([str(specs), "-o", str(out)], capsys)[0] == 0
    before = sorted(p.name for p in out.rglob("*") if p.is_file())
    assert "lamp.py" in before and "lamp.Lamp.dot" in before
    code, _, err = build([str(specs / "door.fsm"), "-o", str(out)], capsys)
    assert code == 0 and "0 stale removed" in err and "fsmc: removed" not in err
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == before
    assert build(["--check", str(specs / "door.fsm"), "-o", str(out)], capsys)[0] == 0

    (specs / "door.fsm").write_text(DOOR.replace("Door", "Gate"))  # a machine renamed
    (specs / "lamp.fsm").unlink()
    code, _, err = build(["--check", str(specs / "door.fsm"), "-o", str(out)], capsys)
    assert code == 1
    assert f"stale:   {out / 'lamp.py'} (specs/lamp.fsm no longer exists)" in err
    assert f"stale:   {out / 'diagrams' / 'door.Door.dot'} (no longer generated" in err
    code, _, err = build([str(specs / "door.fsm"), "-o", str(out)], capsys)
    assert code == 0, err
    removed = sorted(line.split()[2] for line in err.splitlines()
                     if line.startswith("fsmc: removed "))
    gone = {"lamp.py", "lamp.Lamp.dot", "door.Door.dot"}
    if (out / "diagrams" / "door.Gate.svg").exists():  # with Graphviz, their SVGs go too
        gone |= {"lamp.Lamp.svg", "door.Door.svg"}
    assert sorted(Path(name).name for name in removed) == sorted(gone)
    assert not any((out / "diagrams" / name).exists() for name in gone)
    assert f"{len(gone)} stale removed" in err


def test_diagrams_can_go_to_a_directory_of_their_own(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "door.fsm"
    spec.write_text(DOOR)
    out, pictures = tmp_path / "pkg", tmp_path / "docs" / "diagrams"
    code, _, err = build([str(spec), "-o", str(out), "--diagrams", str(pictures)], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["__init__.py", "door.py"]
    assert (pictures / "door.Door.dot").read_text().startswith("// Generated by fsmc from ")
    assert f"in {out}/ and {pictures}/" in err
    args = [str(spec), "-o", str(out), "--diagrams", str(pictures), "--check"]
    assert build(args, capsys)[0] == 0
    (pictures / "door.Door.dot").unlink()
    code, _, err = build(args, capsys)
    assert code == 1 and f"missing: {pictures / 'door.Door.dot'}" in err


def test_committed_generated_is_in_sync(capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    code, _, err = build(["--check", "specs/"], capsys)
    assert code == 0, err


def test_check_reports_missing_differing_and_stale(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "door.fsm"
    spec.write_text(DOOR)
    out = tmp_path / "out"
    code, _, err = build([str(spec), "-o", str(out), "--check"], capsys)
    assert code == 1 and "missing:" in err and not out.exists()
    assert build([str(spec), "-o", str(out)], capsys)[0] == 0
    assert build([str(spec), "-o", str(out), "--check"], capsys)[0] == 0
    (out / "door.py").write_text((out / "door.py").read_text() + "# edited\n")
    code, _, err = build([str(spec), "-o", str(out), "--check"], capsys)
    assert code == 1 and "differs:" in err
    assert build([str(spec), "-o", str(out)], capsys)[0] == 0
    (out / "old_machine.py").write_text("# Generated by fsmc 0.1.0 from old.fsm. DO NOT EDIT.\n")
    (out / "mine.py").write_text("# a user's file, not generated\n")
    code, _, err = build([str(spec), "-o", str(out), "--check"], capsys)
    assert code == 1 and "stale:" in err and "old_machine.py" in err and "mine.py" not in err
    assert build([str(spec), "-o", str(out)], capsys)[0] == 0
    assert not (out / "old_machine.py").exists() and (out / "mine.py").exists()


def test_nothing_is_written_when_a_spec_has_errors(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.fsm"
    good.write_text("machine Good {\n initial A\n}\n")
    bad = tmp_path / "bad.fsm"
    bad.write_text("machine Bad {\n initial A\n A -> Nowhere : Go\n}\n")
    out = tmp_path / "out"
    code, stdout, err = build([str(tmp_path), "-o", str(out)], capsys)
    assert code == 1 and "E101" in stdout and "nothing written" in err
    assert not out.exists()


def test_generated_package_imports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "HAConfig.fsm"
    spec.write_text((CASES / "HAConfig.fsm").read_text())
    assert build([str(spec), "-o", str(tmp_path / "pkg")], capsys)[0] == 0
    assert (tmp_path / "pkg" / "__init__.py").exists()
    module = load_module(tmp_path / "pkg" / "ha_config.py", "pkg_ha_config")
    machine = module.HAConfig("host-1")
    assert machine.enabled() is module.HAConfig.State.Available
    assert machine.disabled() is module.HAConfig.State.Disabled


# As written in the spec: every escape of the language, template syntax and code.
HOSTILE_DOC = (
    r"quote \" triple \"\"\" single ''' backslash \\ newline \n tab \t "
    r"jinja {{ 7 * 7 }} {% if 1 %}x{% endif %} {# c #} code ); import os; os.system('x') # "
    r"marker MARKER_PATH"
)


def test_hostile_spec_lands_as_inert_text(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "pwned"
    doc = HOSTILE_DOC.replace("MARKER_PATH", str(marker)).replace(
        "os.system('x')", f"open({str(marker)!r}, 'w')")
    spec = tmp_path / "evil.fsm"
    spec.write_text(f'machine Evil "{doc}" {{\n initial A "{doc}"\n state B\n A -> B : Go\n}}\n')
    out = tmp_path / "out"
    code, stdout, err = build([str(spec), "-o", str(out)], capsys)
    assert code == 0, stdout + err
    module = load_module(out / "evil.py", "evil_generated")
    assert not marker.exists()
    expected = (doc.replace('\\"', '"').replace("\\\\", "\\").replace("\\n", "\n")
                .replace("\\t", "\t"))
    assert module.Evil.__doc__ == expected
    assert module.Evil.SPEC.docs["A"] == expected
    assert "{{" in module.Evil.__doc__ and "{%" in module.Evil.__doc__


@pytest.mark.parametrize(("spec_text", "message"), [
    ("machine M {\n initial A\n state B\n A -> B : Fire\n}", "becomes the method `fire()`"),
    ("machine M {\n initial A\n state B\n A -> B : State\n}", "already an attribute"),
    ("machine M {\n initial A\n state B\n A -> B : Go\n B -> A : GO\n}", "both become"),
    ("machine M {\n initial A\n state None\n A -> None : Go\n}", "Python keyword"),
    ("machine M {\n initial A\n state class\n A -> class : Go\n}", "Python keyword"),
    ("machine M {\n initial A\n state __x__\n A -> __x__ : Go\n}", "starts with `_`"),
    ("machine M {\n initial A\n state name\n A -> name : Go\n}", "attribute of every enum"),
    ("machine M {\n initial A\n state B\n A -> B : Go if go\n}", "already becomes the method"),
    ("machine M {\n initial A\n state B\n A -> B : Go if fire\n}", "already an attribute"),
    ("machine None {\n initial A\n}", "machine name `None` is a Python keyword"),
    ("machine True {\n initial A\n}", "machine name `True` is a Python keyword"),
    ("machine False {\n initial A\n}", "machine name `False` is a Python keyword"),
    ("machine Machine {\n initial A\n}", "the generated module itself uses"),
    ("machine M {\n initial A\n state upper\n A -> upper : Go\n}", "attribute of every enum"),
])
def test_names_that_would_break_generated_code(spec_text: str, message: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "names.fsm"
    spec.write_text(spec_text)
    code, stdout, _ = build([str(spec), "-o", str(tmp_path / "out")], capsys)
    assert code == 1
    assert "E108" in stdout and message in stdout
    assert not (tmp_path / "out").exists()
    assert main(["check", str(spec)], stdout=(checked := io.StringIO())) == 1
    assert re.search(r"names\.fsm:\d+:\d+: error\[E108\]", checked.getvalue())


def test_interrupted_write_leaves_no_partial_module(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    spec = tmp_path / "door.fsm"
    spec.write_text("machine Door {\n initial Shut\n state Open\n Shut -> Open : Push\n}\n")
    out = tmp_path / "out"
    assert build([str(spec), "-o", str(out)], capsys)[0] == 0
    before = (out / "door.py").read_bytes()
    spec.write_text("machine Door {\n initial Shut\n state Ajar\n Shut -> Ajar : Push\n}\n")

    def interrupted(source: str, target: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    assert main(["build", str(spec), "-o", str(out)]) == 130
    assert (out / "door.py").read_bytes() == before
    assert [p.name for p in out.rglob("*") if p.name.startswith(".")] == []


def test_generated_files_get_the_usual_permissions(tmp_path: Path) -> None:
    import stat

    spec = ROOT / "specs" / "nic.fsm"
    assert main(["build", str(spec), "-o", str(tmp_path / "out"), "--no-svg"]) == 0
    mask = os.umask(0o022)
    os.umask(mask)
    module = tmp_path / "out" / "nic.py"
    assert stat.S_IMODE(module.stat().st_mode) == 0o666 & ~mask


def test_several_machines_in_one_module_keep_their_tables_apart(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`Foo`.`BarBaz` / `FooBar`.`Baz` and the events `Go` / `GoPlain` map to one table name
    each if named naively: the later table replaced the earlier one."""
    code, _, err = build([str(CASES / "two_machines.fsm"), "-o", str(tmp_path), "--no-svg"],
                         capsys)
    assert code == 0, err
    module = load_module(tmp_path / "two_machines.py", "two_machines_generated")
    light, foo, foo_bar = module.Light("l"), module.Foo("f"), module.FooBar("fb")
    assert light.switch() is module.Light.State.On and light.switch() is module.Light.State.Off
    assert foo.bar_baz() is module.Foo.State.B

    class ReadyFoo(module.Foo):  # type: ignore[misc,name-defined]
        def ready(self, **payload: object) -> bool:
            return True

    ready = ReadyFoo("r")
    ready.bar_baz()
    assert ready.go_plain() is module.Foo.State.B and ready.go() is module.Foo.State.A
    assert foo_bar.baz() is module.FooBar.State.B
    assert not hasattr(module, "_S") and not hasattr(module, "_E")
