"""`fsmc review`: the static site, checked in a real headless browser (Debian's Chromium driven
by Playwright) and, for escaping and structure, as files.

Needs: `apt-get install chromium graphviz` and `pip install playwright` (never `playwright
install`: the test uses the system browser). Skips, saying why, when either is missing.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag, urljoin, urlparse

import pytest
from fsmc.compiler.cli import main
from fsmc.compiler.project import check

from tests.browser import chromium
from tests.conftest import ROOT, dot_missing_reason

HOSTILE = r'Quotes \"q\", <script>alert(1)</script> & <b>tags</b>, backslash \\ and \n newline'


# --- the site as files ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    old = Path.cwd()
    os.chdir(ROOT)
    try:
        assert main(["review", "specs/", "-o", str(out)]) == 0
    finally:
        os.chdir(old)
    return out


def machine_names() -> list[tuple[str, str]]:
    """(page, machine) of every machine in specs/."""
    return [(f"{Path(s.path).stem}.{m.name.text}.html", m.name.text)
            for s in check([ROOT / "specs"]).specs for m in s.machines]


def test_site_has_a_page_per_machine_and_per_spec(site: Path) -> None:
    for page, _ in machine_names():
        assert (site / page).is_file(), page
    for spec in (ROOT / "specs").glob("*.fsm"):
        assert (site / "source" / f"{spec.stem}.fsm.html").is_file()
    assert (site / "index.html").is_file() and (site / "style.css").is_file()


def test_hostile_docs_are_escaped(tmp_path: Path) -> None:
    spec = tmp_path / "evil.fsm"
    spec.write_text(f'machine Evil "{HOSTILE}" {{\n initial A "{HOSTILE}"\n state B\n'
                    f' A -> B : Go # <script>comment</script>\n}}\n')
    out = tmp_path / "site"
    assert main(["review", str(spec), "-o", str(out)]) == 0
    for page in out.rglob("*.html"):
        html = page.read_text()
        assert "<script>alert" not in html and "<script>comment" not in html, page.name
        assert "<b>tags</b>" not in html
    page = (out / "evil.Evil.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;tags&lt;/b&gt;" in page


def test_review_stops_on_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.fsm"
    bad.write_text("machine Bad {\n initial A\n A -> Nowhere : Go\n}\n")
    assert main(["review", str(bad), "-o", str(tmp_path / "site")]) == 1
    assert not (tmp_path / "site").exists()
    assert "E101" in capsys.readouterr().out


def test_review_without_dot_writes_the_site_with_a_notice(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out = tmp_path / "site"
    assert main(["review", str(ROOT / "specs" / "nic.fsm"), "-o", str(out)]) == 0
    assert capsys.readouterr().err.count("warning") == 1
    page = (out / "nic.Nic.html").read_text()
    assert "<svg" not in page and "not installed" in page and (out / "nic.Nic.dot").exists()


# --- the site in a browser --------------------------------------------------------------------

class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server(site: Path) -> Iterator[str]:
    handler = functools.partial(_Quiet, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def browser(server: str) -> Iterator[Any]:
    reason = dot_missing_reason()
    if reason is not None:
        pytest.skip(f"the review site's diagrams need Graphviz: {reason}")
    with chromium() as instance:
        yield instance


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield tab
    context.close()
    assert not errors, errors


def test_index_lists_every_machine(page: Any, server: str) -> None:
    response = page.goto(server + "index.html")
    assert response is not None and response.ok
    assert page.title() == "fsmc review"
    for target, name in machine_names():
        link = page.locator(f"a.machine-link[href='{target}']")
        assert link.is_visible() and link.inner_text() == name
    assert page.locator("text=W302").first.is_visible()


@pytest.mark.parametrize("target, name", machine_names())
def test_machine_page(page: Any, server: str, target: str, name: str) -> None:
    page.goto(server + "index.html")
    page.locator(f"a.machine-link[href='{target}']").click()
    page.wait_for_load_state()
    assert page.url == server + target
    assert page.locator("h1").inner_text() == name
    svg = page.locator("#diagram svg")
    assert svg.count() == 1 and svg.is_visible()
    box = svg.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 100
    machine = next(m for s in check([ROOT / "specs"]).specs for m in s.machines
                   if m.name.text == name)
    for state in machine.state_names:
        node = page.locator(f"#diagram svg g.node:has(title:text-is('{state}')) text").first
        assert node.is_visible(), f"{state} not visible in the diagram"
        assert page.locator(f"tbody#state-{state} a.state-name").is_visible()
    # The diagram's nodes link to their row of the table.
    first = machine.state_names[0]
    page.locator(f"#diagram svg g.node:has(title:text-is('{first}')) "
                 f"text:text-is('{first}')").click()
    assert page.url.endswith(f"#state-{first}")
    assert page.locator(f"tbody#state-{first}").is_visible()


def test_links_back_to_spec_lines(page: Any, server: str) -> None:
    page.goto(server + "volume.Volume.html")
    row = page.locator("tbody#state-Ready tr").filter(has_text="ResizeRequested")
    link = row.locator("td >> nth=-1").locator("a")
    line = int(link.inner_text())
    link.click()
    page.wait_for_load_state()
    assert page.url == f"{server}source/volume.fsm.html#L{line}"
    target = page.locator(f"tr#L{line}")
    assert target.is_visible()
    assert re.search(r"Ready -> Resizing +: ResizeRequested", target.inner_text())
    assert page.evaluate("document.querySelector(':target').id") == f"L{line}"
    # An edge of the diagram leads to its transition's line too.
    page.goto(server + "nic.Nic.html")
    page.locator("#diagram svg g.edge text").first.click()
    page.wait_for_load_state()
    assert re.search(r"/source/nic\.fsm\.html#L\d+$", page.url)


def test_fit_toggle(page: Any, server: str) -> None:
    page.goto(server + "virtual_machine.VirtualMachine.html")
    fitted = page.locator("#diagram svg").bounding_box()["width"]
    page.locator("#fit-toggle").click()
    assert page.locator("#fit-toggle").get_attribute("aria-pressed") == "false"
    assert page.locator("#diagram svg").bounding_box()["width"] != fitted


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(str(values["id"]))
        for key in ("href", "xlink:href", "src"):
            if values.get(key):
                self.links.append(str(values[key]))


def test_every_link_resolves(page: Any, server: str) -> None:
    """Crawl the site from the index in the browser: every local link loads and every
    fragment names an element of its page."""
    seen: dict[str, set[str]] = {}
    queue = [server + "index.html"]
    fragments: list[tuple[str, str, str]] = []
    while queue:
        url = queue.pop()
        if url in seen:
            continue
        response = page.goto(url)
        assert response is not None and response.ok, url
        parser = _Links()
        parser.feed(page.content())
        seen[url] = parser.ids
        for link in parser.links:
            absolute, fragment = urldefrag(urljoin(url, link))
            if urlparse(absolute).netloc != urlparse(server).netloc:
                continue
            if fragment:
                fragments.append((url, absolute, fragment))
            if absolute.endswith(".html") and absolute not in seen:
                queue.append(absolute)
            elif not absolute.endswith(".html"):
                assert page.request.get(absolute).ok, absolute
    assert len(seen) >= 1 + 2 * len(list((ROOT / "specs").glob("*.fsm")))
    for origin, target, fragment in fragments:
        assert fragment in seen[target], f"{origin} links to {target}#{fragment}, not there"


def test_the_table_uses_the_spec_notation(tmp_path: Path) -> None:
    """Guards, actions and tags read as in the spec: `if g` / `unless g`, `do a`, `[tag]`."""
    spec = tmp_path / "door.fsm"
    spec.write_text("machine Door {\n initial Shut\n state Open\n"
                    " Shut -> Open : Push if unlocked do creak [noise, audit]\n"
                    " Open -> Shut : Pull unless jammed\n}\n")
    assert main(["review", str(spec), "-o", str(tmp_path / "site")]) == 0
    page = (tmp_path / "site" / "door.Door.html").read_text()
    for text in ("if unlocked", "do creak", "[noise, audit]", "unless jammed"):
        assert f"<code>{text}</code>" in page, text
    assert "[not " not in page and "{noise" not in page and "/ creak" not in page
