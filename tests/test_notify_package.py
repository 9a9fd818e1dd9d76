"""`fsmc.notify` itself: `create_app` is importable from the package as the design names it,
lazily (importing the package or its config loads no Starlette), typed for `mypy --strict`
users, and takes the config as a path as well as loaded."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from fsmc.notify.config import ConfigError, hash_key
from fsmc.notify.server import BackgroundServer
from fsmc.runtime import EventBus, StateChanged

from tests.conftest import ROOT
from tests.test_lint import type_tree


def test_create_app_is_the_package_s_and_the_app_module_s() -> None:
    from fsmc.notify import create_app
    from fsmc.notify.app import create_app as in_app

    assert create_app is in_app
    import fsmc.notify

    assert "create_app" in dir(fsmc.notify)
    with pytest.raises(AttributeError, match="has no attribute 'create_ap'"):
        fsmc.notify.create_ap  # noqa: B018


def test_importing_the_package_and_its_config_loads_no_starlette() -> None:
    code = ("import sys, fsmc.notify, fsmc.notify.config; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'starlette'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60)
    assert result.stdout.strip() == "[]"


def write_config(path: Path) -> Path:
    path.write_text(f'[[tenants]]\nid = "acme"\napi_keys = ["{hash_key("k-acme")}"]\n',
                    encoding="utf-8")
    return path


@pytest.mark.parametrize("as_text", [False, True])
def test_the_config_may_be_the_path_of_its_file(tmp_path: Path, as_text: bool) -> None:
    from fsmc.notify import create_app

    path = write_config(tmp_path / "notify.toml")
    app = create_app(EventBus(), str(path) if as_text else path)
    assert app.state.config.source_path == str(path)
    with BackgroundServer(app) as server:
        answer = httpx.get(f"{server.url}/v1/subscriptions",
                           headers={"Authorization": "Bearer k-acme"}, timeout=10)
    assert answer.status_code == 200, answer.text


def test_a_bad_config_file_raises_config_error_and_leaves_the_bus_alone(tmp_path: Path) -> None:
    from fsmc.notify import create_app

    bus = EventBus()
    (tmp_path / "bad.toml").write_text("[[tenants]]\nid = 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.toml"):
        create_app(bus, tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match="cannot read"):
        create_app(bus, tmp_path / "missing.toml")
    bus.post(StateChanged("VirtualMachine", "vm-1", "Start", "Stopped", "Starting", (), {}))
    assert bus.stats()["dead"] == 1  # nobody subscribed: create_app never got that far


def test_mypy_strict_sees_the_real_signature_through_the_package(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    tree = type_tree(tmp_path)
    (tree / "user_app.py").write_text(textwrap.dedent("""\
        from pathlib import Path

        from fsmc.notify import create_app
        from fsmc.runtime import EventBus, StateChanged

        app = create_app(EventBus(), Path("notify.toml"))
        reveal_type(create_app)
        create_app(EventBus(), 42)
        """), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--config-file",
         str(ROOT / "pyproject.toml"), "--cache-dir", str(tmp_path / "cache"), "user_app.py"],
        cwd=tree, capture_output=True, text=True, timeout=600, check=False)
    lines = result.stdout.splitlines()
    revealed = next(line for line in lines if "Revealed type" in line)
    assert "config: fsmc.notify.config.NotifyConfig | str | os.PathLike[str]" \
        in revealed, revealed
    assert "starlette.applications.Starlette" in revealed, revealed
    errors = [line for line in lines if ": error:" in line]
    assert len(errors) == 1 and "user_app.py:8:" in errors[0] and "arg-type" in errors[0], \
        result.stdout
