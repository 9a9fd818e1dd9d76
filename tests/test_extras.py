"""Each extra installs what its feature needs.

By default (fast): every third-party module a feature's code imports, following fsmc's own
imports, comes from a distribution that fsmc's base dependencies or the feature's extra name.

With `-m slow` (about 2 minutes on the shared 2-core machine, which would push the default
suite past its budget): `pip install 'fsmc[EXTRA]'`, one extra alone in a fresh virtual
environment outside the checkout, then the feature's command runs there. fsmc is installed
from a wheel built once from the source tree (its tracked files copied out, so the build
leaves nothing in the checkout); the extra's dependencies are resolved by pip as a user's
install resolves them, from the configured indexes and pip's cache. The environments are made
without pip of their own (`pip --python` installs into them), in parallel.
"""

from __future__ import annotations

import ast
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import tomllib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from importlib.metadata import packages_distributions
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tests.ports import free_port

# The extras and what the feature needs besides fsmc itself (the installs must bring it).
EXTRAS = {
    "": [],
    "store": ["sqlalchemy"],
    "postgres": ["sqlalchemy", "psycopg"],
    "amqp": ["pika"],
    "notify": ["starlette", "uvicorn", "httpx"],
}
INSTALL_TIMEOUT = 600.0

DOOR = "machine Door {\n initial Shut\n state Open\n Shut -> Open : Push\n Open -> Shut : Pull\n}\n"


def pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False)


def tracked_files() -> list[str]:
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True,
                            check=False)
    if listed.returncode != 0:
        pytest.skip("the extras test builds fsmc from a git checkout")
    return [name for name in listed.stdout.decode().split("\0") if name]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fsmc's wheel, built from a copy of the checkout's tracked files as they are now."""
    source = tmp_path_factory.mktemp("fsmc-source")
    for name in tracked_files():
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheels")
    # --no-deps builds fsmc's wheel only; the installs below resolve its dependencies.
    built = pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(source))
    assert built.returncode == 0, built.stderr
    [found] = out.glob("fsmc-*.whl")
    return found


def install(wheel: Path, extra: str, folder: Path) -> Path:
    """A fresh environment in `folder` with `fsmc[extra]` installed; its bin/ folder."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True,
                   timeout=120)
    python = folder / "bin" / "python"
    target = f"{wheel}[{extra}]" if extra else str(wheel)
    done = pip("--python", str(python), "install", "--quiet", "--no-compile", target)
    assert done.returncode == 0, f"pip install 'fsmc[{extra}]' failed:\n{done.stderr}"
    return folder / "bin"


@pytest.fixture(scope="module")
def environments(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One environment per extra (and one without any), installed in parallel."""
    root = tmp_path_factory.mktemp("environments")
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {extra: pool.submit(install, wheel, extra, root / (extra or "base"))
                   for extra in EXTRAS}
        return {extra: future.result() for extra, future in futures.items()}


def user_environment(bin_dir: Path, cwd: Path) -> dict[str, str]:
    """What a program of the environment runs with: nothing of the test's own environment."""
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(cwd)}


def run(bin_dir: Path, *args: str, cwd: Path,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """A program of the environment (`fsmc`, `python`), run outside the checkout."""
    return subprocess.run([str(bin_dir / args[0]), *args[1:]], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, check=False,
                          env=user_environment(bin_dir, cwd))


@contextmanager
def started(bin_dir: Path, *args: str, cwd: Path) -> Iterator[subprocess.Popen[str]]:
    """A program of the environment running in the background; killed if still running."""
    process = subprocess.Popen([str(bin_dir / args[0]), *args[1:]], cwd=cwd,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=user_environment(bin_dir, cwd))
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def project(tmp_path: Path, bin_dir: Path) -> Path:
    """A user's project outside the checkout: one spec, built into `machines/`."""
    (tmp_path / "door.fsm").write_text(DOOR)
    built = run(bin_dir, "fsmc", "build", "door.fsm", "-o", "machines", "--no-svg",
                cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    return tmp_path


# --- what the code imports, against what pyproject.toml declares -----------------------------

# Each extra's feature: the files that need it (their fsmc imports are followed).
# A driver a feature imports only for one kind of deployment, behind an error that names the
# extra to install (the notification service on PostgreSQL: fsmc[notify,postgres]).
OPTIONAL = {"psycopg": "postgres"}
FEATURES = {
    "": ["dsl/*.py", "compiler/**/*.py", "runtime/*.py"],
    "store": ["runtime/store.py", "runtime/store_sql.py", "runtime/store_bound.py",
              "runtime/outbox.py", "runtime/store_schema.py", "runtime/store_migrate.py",
              "compiler/commands/migrate.py"],
    "lsp": ["compiler/lsp/*.py"],
    "watch": ["compiler/watch.py"],
    "amqp": ["runtime/amqp/*.py"],
    "notify": ["notify/*.py"],
}
PACKAGE_DIRS = {"fsmc.dsl": "dsl", "fsmc.compiler": "compiler", "fsmc.runtime": "runtime",
                "fsmc.contrib": "contrib", "fsmc.notify": "notify"}


def module_file(module: str) -> Path | None:
    """The file of an fsmc module (`fsmc.runtime.topics` → runtime/topics.py)."""
    for package, folder in PACKAGE_DIRS.items():
        if module == package or module.startswith(package + "."):
            base = ROOT / folder / Path(*module.removeprefix(package).lstrip(".").split("."))
            for candidate in (base.with_suffix(".py"), base / "__init__.py"):
                if candidate.is_file():
                    return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, at module level or inside functions (absolute names)."""
    tree = ast.parse(path.read_text("utf-8"))
    package = ".".join(["fsmc", *path.relative_to(ROOT).parent.parts])
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{node.module}" if node.module else parent
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def third_party_imports(files: list[Path], skip: set[Path]) -> dict[str, Path]:
    """The top-level names of the non-fsmc, non-standard modules `files` import, following
    fsmc's own imports (except into `skip`), each with a file that imports it."""
    seen: set[Path] = set()
    found: dict[str, Path] = {}
    todo = list(files)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in imported_modules(path):
            top = module.split(".")[0]
            if top == "fsmc":
                target = module_file(module)
                if target is not None and target not in skip:
                    todo.append(target)
            elif top not in sys.stdlib_module_names and top != "generated":
                found.setdefault(top, path)
    return found


def requirement_names(requirements: list[str]) -> set[str]:
    return {re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", r).group()).lower()  # type: ignore[union-attr]
            for r in requirements}


def test_every_extra_declares_what_its_feature_imports() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    base = requirement_names(project["dependencies"])
    extras = {name: requirement_names(found)
              for name, found in project["optional-dependencies"].items()}
    distributions = packages_distributions()
    # The compiler's commands import the extras' features lazily; the base install does not
    # follow them there.
    extra_files = {path for extra, patterns in FEATURES.items() if extra
                   for pattern in patterns for path in ROOT.glob(pattern)}
    problems = []
    for extra, patterns in FEATURES.items():
        files = [path for pattern in patterns for path in sorted(ROOT.glob(pattern))
                 if extra or path not in extra_files]
        declared = base | extras.get(extra, set())
        for module, where in sorted(third_party_imports(
                files, set() if extra else extra_files).items()):
            providers = {re.sub(r"[-_.]+", "-", d).lower() for d in distributions.get(module, [])}
            if not providers & (declared | extras.get(OPTIONAL.get(module, ""), set())):
                problems.append(f"fsmc[{extra}]: {where.relative_to(ROOT)} imports {module} "
                                f"(from {sorted(providers) or 'nowhere'}), not declared")
    # The PostgreSQL driver is loaded by SQLAlchemy from the URL, never imported by name.
    if "psycopg" not in extras["postgres"] and "psycopg-binary" not in extras["postgres"]:
        problems.append("fsmc[postgres] does not install psycopg")
    assert not problems, "\n".join(problems)


# --- real installs ----------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("extra", list(EXTRAS), ids=[e or "none" for e in EXTRAS])
def test_an_extra_installs_its_dependencies(extra: str, environments: dict[str, Path],
                                            tmp_path: Path) -> None:
    missing = [name for name in EXTRAS[extra]
               if run(environments[extra], "python", "-c", f"import {name}",
                      cwd=tmp_path).returncode != 0]
    assert not missing, f"fsmc[{extra}] does not install {missing}"
    assert ROOT not in Path(run(environments[extra], "python", "-c",
                                "import fsmc.dsl; print(fsmc.dsl.__file__)",
                                cwd=tmp_path).stdout.strip()).parents


@pytest.mark.slow
def test_without_extras_the_compiler_works_and_services_name_their_extra(
        environments: dict[str, Path], tmp_path: Path) -> None:
    bin_dir = environments[""]
    folder = project(tmp_path, bin_dir)
    script = ("from machines.door import Door\nd = Door('d1')\nd.push()\n"
              "print(d.state.name)\n")
    done = run(bin_dir, "python", "-c", script, cwd=folder)
    assert (done.returncode, done.stdout) == (0, "Open\n"), done.stderr
    (folder / "notify.toml").write_text("")
    served = run(bin_dir, "fsmc", "notify", "serve", "--config", "notify.toml", cwd=folder)
    assert served.returncode == 2
    assert "the service needs its extra: pip install 'fsmc[notify]'" in served.stderr
    tail = run(bin_dir, "fsmc", "events", "tail", "--amqp", "amqp://127.0.0.1:1/", cwd=folder)
    assert tail.returncode == 2
    assert "--amqp needs its extra: pip install 'fsmc[amqp]'" in tail.stderr


STORE_SCRIPT = textwrap.dedent("""\
    import sys
    from fsmc.runtime.store import SqlStore
    from machines.door import Door

    with SqlStore(sys.argv[1]) as store:
        store.create(Door, "d1").push()
    with SqlStore(sys.argv[1]) as store:
        print(store.load(Door, "d1").state.name)
    """)


@pytest.mark.slow
def test_store_extra_persists_a_machine(environments: dict[str, Path], tmp_path: Path) -> None:
    bin_dir = environments["store"]
    folder = project(tmp_path, bin_dir)
    done = run(bin_dir, "python", "-c", STORE_SCRIPT, f"sqlite:///{folder}/doors.db",
               cwd=folder)
    assert (done.returncode, done.stdout) == (0, "Open\n"), done.stderr


@pytest.mark.slow
def test_postgres_extra_persists_a_machine(environments: dict[str, Path],
                                           tmp_path: Path) -> None:
    from tests import pg

    if pg.binaries() is None:
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql)")
    bin_dir = environments["postgres"]
    folder = project(tmp_path, bin_dir)
    done = run(bin_dir, "python", "-c", STORE_SCRIPT, pg.fresh_url(), cwd=folder)
    assert (done.returncode, done.stdout) == (0, "Open\n"), done.stderr


PUBLISH_SCRIPT = textwrap.dedent("""\
    import sys
    from fsmc.runtime import EventBus
    from fsmc.runtime.amqp import AmqpPublisher
    from machines.door import Door

    bus = EventBus()
    publisher = AmqpPublisher(sys.argv[1], source="extras-test")
    bus.subscribe(publisher, topic="#")
    Door(sys.argv[2], bus=bus).push()
    publisher.close(timeout=30)
    """)


@pytest.mark.slow
def test_amqp_extra_tails_the_broker(environments: dict[str, Path], tmp_path: Path) -> None:
    from tests import rabbit

    reason = rabbit.available()
    if reason is not None:
        pytest.skip(reason)
    broker = rabbit.shared()
    bin_dir = environments["amqp"]
    folder = project(tmp_path, bin_dir)
    resource = f"door-{time.monotonic_ns()}"  # the broker is shared: only this event counts
    with started(bin_dir, "fsmc", "events", "tail", "--amqp", broker.url, "--bind", "Door.#",
                 "--count", "1", cwd=folder) as tail:
        deadline = time.monotonic() + 60
        while tail.poll() is None and time.monotonic() < deadline:
            # Published until the tail (whose queue lives only while it runs) has seen one.
            done = run(bin_dir, "python", "-c", PUBLISH_SCRIPT, broker.url, resource,
                       cwd=folder)
            assert done.returncode == 0, done.stderr
            try:
                tail.wait(timeout=1)
            except subprocess.TimeoutExpired:
                continue
        out, err = tail.communicate(timeout=30)
    assert tail.returncode == 0, err
    assert resource in out and "Shut" in out and "Open" in out, out


@pytest.mark.slow
def test_notify_extra_serves(environments: dict[str, Path], tmp_path: Path) -> None:
    bin_dir = environments["notify"]
    (tmp_path / "notify.toml").write_text('[[tenants]]\nid = "acme"\napi_keys = []\n')
    port = free_port()
    with started(bin_dir, "fsmc", "notify", "serve", "--config", "notify.toml", "--port",
                 str(port), "--db", "subscriptions.db", cwd=tmp_path) as server:
        answer = wait_for_http(f"http://127.0.0.1:{port}/", server)
        assert answer.status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/v1/events", timeout=5).status_code == 401
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
    assert f"notification service on http://127.0.0.1:{port}/ (1 tenant)" in err
    # Following a broker is the amqp extra's: without it, a usage error that says so.
    followed = run(bin_dir, "fsmc", "notify", "serve", "--config", "notify.toml", "--port",
                   str(free_port()), "--db", "subscriptions.db", "--amqp", "amqp://127.0.0.1:1/",
                   cwd=tmp_path)
    assert followed.returncode == 2
    assert "--amqp needs its extra: pip install 'fsmc[amqp]'" in followed.stderr


def wait_for_http(url: str, process: subprocess.Popen[str],
                  timeout: float = 60) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the service exited: {process.communicate()[1]}")
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"the service did not answer at {url}")
