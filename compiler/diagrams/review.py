"""`fsmc review`: a static HTML site for reviewing specs in a browser.

`site_files(project, svg, site)` returns every file of the site as bytes (pure, apart from
rendering the SVGs, which it is given a function for): an index of every machine (doc, counts,
warnings), a page per machine (inline SVG diagram whose states link to their row of the state
table, the table of state → event → target with guards, actions and tags, each linking to its
spec line) and a page per spec file listing its source with line anchors.

The templates (`templates/*.html.j2`) only lay out the view dataclasses built here; Jinja's
autoescaping is on, so doc strings are shown as written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import jinja2
from fsmc.compiler.analyses.properties import machine_verdicts
from fsmc.compiler.buildplan import display_path, project_root
from fsmc.compiler.highlight import highlight_line
from fsmc.compiler.naming import module_name
from fsmc.compiler.project import Project
from fsmc.dsl.diagnostics import Diagnostic, code, trace_text
from fsmc.dsl.model import Machine, SpecFile, StateKind
from markupsafe import Markup, escape

from .dot import header, to_dot
from .view import Links, guard_text, machine_view, state_warnings, transition_label

STYLESHEET = "style.css"
SOURCE_DIR = "source"
# Renders DOT to SVG; None when Graphviz is not installed.
SvgRenderer = Callable[[str], bytes] | None


@dataclass(frozen=True)
class WarningRow:
    code: str
    name: str
    message: str
    line: int
    href: str


@dataclass(frozen=True)
class TransitionRow:
    event: str
    target: str
    guard: str | None
    action: str | None
    tags: tuple[str, ...]
    label: str
    line: int
    href: str
    via_star: bool


@dataclass(frozen=True)
class StateRow:
    name: str
    kind: str  # initial, entry, final, state
    doc: str | None
    line: int
    href: str
    warnings: tuple[WarningRow, ...]
    transitions: tuple[TransitionRow, ...]

    @property
    def mark(self) -> str:
        """The class of its row: the diagram's mark for the state."""
        codes = {w.code for w in self.warnings}
        if "W302" in codes:
            return "dead-end"
        return "unreachable" if codes & {"W301", "W303"} else ""


@dataclass(frozen=True)
class AssertionRow:
    """One `assert` of the machine: `status` is proved, refuted or expected failure; a
    refuted one has its counterexample (text) and a diagram with that path highlighted."""

    text: str
    line: int
    href: str
    status: str
    reason: str
    counterexample: str | None
    svg_file: str | None
    svg: Markup | None


@dataclass(frozen=True)
class MachinePage:
    name: str
    doc: str | None
    path: str  # the spec, as shown
    page: str
    dot_file: str
    svg_file: str | None
    svg: Markup | None
    line: int
    source_page: str
    states: tuple[StateRow, ...]
    events: tuple[str, ...]
    transition_count: int
    warnings: tuple[WarningRow, ...]
    assertions: tuple[AssertionRow, ...] = ()


@dataclass(frozen=True)
class SourceLine:
    code: str
    comment: str  # from `#` to the end of the line, shown dimmed
    html: str = ""  # the whole line highlighted (fsmc.compiler.highlight), escaped


@dataclass(frozen=True)
class SourcePage:
    path: str
    page: str
    lines: tuple[SourceLine, ...]
    machines: tuple[MachinePage, ...]


def split_comment(line: str) -> SourceLine:
    """A spec line cut where its comment starts (a `#` outside a string)."""
    in_string = escaped = False
    for index, char in enumerate(line):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "#":
            return SourceLine(line[:index], line[index:])
    return SourceLine(line, "")


def code_ticks(text: str) -> Markup:
    """Escape `text` and show its `backticked` names as code, as diagnostics write them."""
    parts = str(escape(text)).split("`")
    out = [part if index % 2 == 0 else f"<code>{part}</code>"
           for index, part in enumerate(parts)]
    if len(parts) % 2 == 0:  # an unmatched backtick stays as it was
        out[-1] = "`" + parts[-1]
    return Markup("".join(out))  # every part was escaped above


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("fsmc.compiler", "diagrams/templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
        lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["ticks"] = code_ticks
    return env


def source_page_name(module: str) -> str:
    return f"{SOURCE_DIR}/{module}.fsm.html"


def inline_svg(svg: bytes) -> Markup:
    """Graphviz's SVG without its XML prolog and comments, to sit inside a page. Its markup
    is Graphviz's own, whose text it escapes."""
    text = svg.decode("utf-8")
    start = text.find("<svg")
    body = re.sub(r"<!--.*?-->\n?", "", text[start:] if start >= 0 else text, flags=re.S)
    return Markup(body.strip())  # Graphviz escapes its text


def _warning_rows(diagnostics: Sequence[Diagnostic], source_page: str,
                  prefix: str) -> tuple[WarningRow, ...]:
    return tuple(
        WarningRow(d.code, code(d.code).name, d.message, d.span.line,
                   f"{prefix}{source_page}#L{d.span.line}")
        for d in diagnostics)


def machine_diagnostics(spec: SpecFile,
                        diagnostics: Sequence[Diagnostic]) -> dict[str, list[Diagnostic]]:
    """The diagnostics of `spec`, by the machine whose block they fall in (a block runs from
    its `machine` line to the next one)."""
    starts = sorted((m.name.span.line, m.name.text) for m in spec.machines)
    found: dict[str, list[Diagnostic]] = {}
    for diagnostic in diagnostics:
        if diagnostic.span.path != spec.path:
            continue
        owner = None
        for line, name in starts:
            if line <= diagnostic.span.line:
                owner = name
        if owner is not None:
            found.setdefault(owner, []).append(diagnostic)
    return found


def machine_page(machine: Machine, spec: SpecFile, module: str, diagnostics: Sequence[Diagnostic],
                 svg: SvgRenderer, shown: str) -> tuple[MachinePage, dict[str, bytes]]:
    """A machine's page view, and the diagram files beside it."""
    source = source_page_name(module)
    stem = f"{module}.{machine.name.text}"
    line_link = f"{source}#L{{}}"
    links = Links(state=lambda name: f"#state-{name}", line=line_link.format)
    own = machine_diagnostics(spec, diagnostics).get(machine.name.text, [])
    dot = to_dot([machine_view(machine, own, links=links)], comment=header(shown))
    files = {f"{stem}.dot": dot.encode("utf-8")}
    rendered = svg(dot) if svg is not None else None
    if rendered is not None:
        files[f"{stem}.svg"] = rendered
    by_state = state_warnings(machine, own)
    states = []
    for decl in machine.states:
        name = decl.name.text
        rows = tuple(
            TransitionRow(t.event.text, t.target.text, guard_text(t),
                          None if t.action is None else f"do {t.action.name.text}",
                          t.tag_names, transition_label(t), t.line, line_link.format(t.line),
                          t.via_star)
            for t in machine.transitions if t.source.text == name)
        states.append(StateRow(name, decl.kind.value, decl.doc, decl.name.span.line,
                               line_link.format(decl.name.span.line),
                               _warning_rows(by_state.get(name, ()), source, ""), rows))
    assertions = []
    for verdict in machine_verdicts(machine):
        assertion = verdict.assertion
        status = "proved" if verdict.holds else (
            "expected failure" if assertion.expect_refuted else "refuted")
        svg_file = shown_svg = None
        if verdict.trace:
            traced = to_dot([machine_view(machine, own, links=links, traces=[verdict.trace])],
                            comment=header(shown))
            name = f"{stem}.assert-L{assertion.line}"
            files[f"{name}.dot"] = traced.encode("utf-8")
            drawn = svg(traced) if svg is not None else None
            if drawn is not None:
                files[f"{name}.svg"] = drawn
                svg_file, shown_svg = f"{name}.svg", inline_svg(drawn)
        assertions.append(AssertionRow(
            assertion.text, assertion.line, line_link.format(assertion.line), status,
            verdict.reason, trace_text(verdict.trace) if verdict.trace else None, svg_file,
            shown_svg))
    page = MachinePage(
        name=machine.name.text, doc=machine.doc, path=shown, page=f"{stem}.html",
        dot_file=f"{stem}.dot", svg_file=f"{stem}.svg" if rendered is not None else None,
        svg=inline_svg(rendered) if rendered is not None else None,
        line=machine.name.span.line, source_page=source, states=tuple(states),
        events=machine.event_names, transition_count=len(machine.transitions),
        warnings=_warning_rows(own, source, ""), assertions=tuple(assertions))
    return page, files


def site_files(project: Project, svg: SvgRenderer, site: Path, *,
               title: str = "fsmc review") -> dict[str, bytes]:
    """Every file of the review site in `site` for a checked project without errors (spec
    paths are shown relative to the site's project, as `fsmc build` writes them)."""
    root = project_root(site)
    env = environment()
    files: dict[str, bytes] = {}
    machines: list[MachinePage] = []
    sources: list[SourcePage] = []
    for spec in project.specs:
        shown = display_path(spec.path, root)
        module = module_name(Path(spec.path).stem)
        pages = []
        for machine in spec.machines:
            page, diagrams = machine_page(machine, spec, module, project.diagnostics, svg, shown)
            files.update(diagrams)
            pages.append(page)
        machines.extend(pages)
        texts = [spec.source.line_text(n) for n in range(1, spec.source.line_count + 1)]
        if texts and texts[-1] == "":
            texts.pop()
        lines = tuple(replace(split_comment(text), html=highlight_line(text))
                      for text in texts)
        sources.append(SourcePage(shown, source_page_name(module), lines, tuple(pages)))
    warnings = sum(len(m.warnings) for m in machines)
    context = {"title": title, "machines": machines, "sources": sources,
               "warning_count": warnings, "has_svg": svg is not None}
    files["index.html"] = _render(env, "index.html.j2", root="", **context)
    for page in machines:
        files[page.page] = _render(env, "machine.html.j2", root="", machine=page, **context)
    for source in sources:
        files[source.page] = _render(env, "source.html.j2", root="../", source=source,
                                     **context)
    files[STYLESHEET] = (resources.files("fsmc.compiler").joinpath("diagrams/templates")
                         .joinpath(STYLESHEET).read_bytes())
    return files


def _render(env: jinja2.Environment, template: str, **context: object) -> bytes:
    return env.get_template(template).render(**context, kinds=KIND_WORDS).encode("utf-8")


KIND_WORDS = {StateKind.INITIAL.value: "initial", StateKind.ENTRY.value: "entry",
              StateKind.FINAL.value: "final", StateKind.NORMAL.value: ""}
