"""Diagram views → DOT text, through the `graphviz` package. Pure and byte-for-byte stable.

Nodes and edges are written in the order of their view (spec order); attributes are sorted by
the `graphviz` package; every string that comes from a spec is escaped for DOT (`_text`) or for
Graphviz's HTML-like labels (`html.escape`), so doc strings may hold quotes, backslashes, `<>`
and newlines.
"""

from __future__ import annotations

import html
import re
import textwrap
from collections.abc import Iterable, Sequence
from typing import cast

import graphviz  # type: ignore[import-untyped]
from fsmc.dsl.diagnostics import Diagnostic
from fsmc.dsl.model import Machine, StateKind

from .view import EdgeLine, EdgeView, Links, MachineView, Mark, NodeView, Role, machine_view

FONT = "Helvetica,Arial,sans-serif"

GRAPH_STYLE = {
    "rankdir": "LR", "fontname": FONT, "fontsize": "12", "labelloc": "t", "labeljust": "l",
    "nodesep": "0.3", "ranksep": "0.45", "pad": "0.25", "bgcolor": "white",
}
NODE_STYLE = {
    "shape": "box", "style": "rounded,filled", "fillcolor": "#eef3fb", "color": "#4a6fa5",
    "fontname": FONT, "fontsize": "11", "margin": "0.12,0.05", "height": "0.36",
}
EDGE_STYLE = {
    "fontname": FONT, "fontsize": "9", "color": "#6b7a89", "fontcolor": "#24313d",
    "arrowsize": "0.7",
}

# Colours shared with the review site's legend (templates/style.css uses the same values).
MARK_NODE_STYLE: dict[Mark, dict[str, str]] = {
    Mark.NONE: {},
    Mark.UNREACHABLE: {"style": "rounded,filled,dashed", "fillcolor": "#f1f3f5",
                       "color": "#adb5bd", "fontcolor": "#868e96"},
    Mark.DEAD_END: {"fillcolor": "#fff4e6", "color": "#e8590c", "penwidth": "2"},
    Mark.ADDED: {"fillcolor": "#ebfbee", "color": "#2b8a3e", "fontcolor": "#2b8a3e",
                 "penwidth": "2"},
    Mark.REMOVED: {"style": "rounded,filled,dashed", "fillcolor": "#fff5f5",
                   "color": "#c92a2a", "fontcolor": "#c92a2a", "penwidth": "2"},
    Mark.CHANGED: {"fillcolor": "#fff9db", "color": "#e67700", "fontcolor": "#a35200",
                   "penwidth": "2"},
    Mark.PATH: {"fillcolor": "#ffe3e3", "color": "#c2255c", "fontcolor": "#a61e4d",
                "penwidth": "2.5"},
}
MARK_EDGE_STYLE: dict[Mark, dict[str, str]] = {
    Mark.NONE: {},
    Mark.UNREACHABLE: {"color": "#adb5bd", "fontcolor": "#868e96"},
    Mark.DEAD_END: {"color": "#e8590c"},
    Mark.ADDED: {"color": "#2b8a3e", "fontcolor": "#2b8a3e", "penwidth": "1.8"},
    Mark.REMOVED: {"color": "#c92a2a", "fontcolor": "#c92a2a", "style": "dashed",
                   "penwidth": "1.8"},
    Mark.CHANGED: {"color": "#e67700", "fontcolor": "#a35200", "penwidth": "1.8"},
    Mark.PATH: {"color": "#c2255c", "fontcolor": "#a61e4d", "penwidth": "2.5"},
}
ROLE_NODE_STYLE: dict[Role, dict[str, str]] = {
    Role.STATE: {},
    Role.INITIAL: {"shape": "point", "width": "0.16", "style": "filled", "fillcolor": "#24313d",
                   "color": "#24313d"},
    Role.ENTRY: {"shape": "point", "width": "0.16", "style": "filled", "fillcolor": "white",
                 "color": "#24313d"},
    Role.ANY: {"shape": "box", "style": "rounded,dashed", "color": "#6b7a89",
               "fontcolor": "#4d5b68", "fontsize": "10"},
}
FINAL_STYLE = {"peripheries": "2"}
TITLE_WIDTH = 100  # characters per line of the doc under the diagram's title
_BACKSLASHES = re.compile(r"\\+")
_SUBSTITUTED = frozenset("GNEHTL")  # Graphviz replaces \G, \N, \E, \H, \T, \L
LOOP = "\u21bb"  # ↻, before each self-transition listed inside its state


# What XML 1.0 cannot carry (Graphviz writes labels into SVG, and parses HTML-like labels as
# XML): controls but tab and newline, U+FFFE, U+FFFF; and the C1 controls, which it discourages.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff\ud800-\udfff]")


def _visible(value: str) -> str:
    """`value` with each character SVG cannot hold written as its escape (`\\x0b`)."""
    return _NOT_XML.sub(lambda match: f"\\x{ord(match.group(0)):02x}" if ord(match.group(0))
                        < 0x100 else f"\\u{ord(match.group(0)):04x}", value)


def _html(value: str) -> str:
    """Text for an HTML-like label: visible (`_visible`), then escaped."""
    return html.escape(_visible(value))


def _literal(dot_string: str) -> str:
    """Mark an escaped string as plain text, so that `<...>` is not taken for an HTML-like
    label by the `graphviz` package."""
    return cast(str, graphviz.nohtml(dot_string))


def _text(value: str) -> str:
    """A DOT escString showing `value` literally: backslashes doubled, newlines as `\\n`; the
    `graphviz` package adds the quotes and escapes `"`; `_literal` stops `<...>` from being taken
    for an HTML-like label."""
    escaped = _visible(value.replace("\r", "")).replace("\\", "\\\\").replace("\n", "\\n")
    return _literal(escaped.replace("\t", " "))


def _tooltip(value: str) -> str:
    """A DOT string showing `value` literally as a tooltip. Graphviz (2.4x) unescapes a tooltip
    twice and substitutes `\\N` (the node's name) and its kin in between, then writes it as
    XML leaving anything that looks like an entity alone; so a run of k backslashes is written
    as 4k backslashes (4k+1 before a letter Graphviz substitutes) and `&` as `&amp;`."""

    def backslashes(match: re.Match[str]) -> str:
        substituted = match.string[match.end():match.end() + 1] in _SUBSTITUTED
        return "\\" * (4 * len(match.group(0)) + substituted)

    escaped = _BACKSLASHES.sub(backslashes, _visible(value.replace("\r", "")).replace("&", "&amp;"))
    escaped = escaped.replace("\r", "").replace("\n", "\\n").replace("\t", " ")
    return _literal(escaped)


def _lines(lines: Iterable[EdgeLine]) -> str:
    """Left-justified label lines (`\\l` ends each)."""
    return _literal("".join(_text(line.text) + "\\l" for line in lines))


def _title(name: str, doc: str | None) -> str:
    parts = [f"<b>{_html(name)}</b>"]
    for paragraph in (doc or "").split("\n") if doc else ():
        for line in textwrap.wrap(paragraph.replace("\t", " "), TITLE_WIDTH) or [""]:
            # An empty <font></font> is a syntax error to Graphviz: a blank line is a break.
            parts.append(f'<font point-size="10">{_html(line)}</font>' if line else "")
    return "<" + '<br align="left"/>'.join(parts) + '<br align="left"/>>'


def _cell(content: str, *, href: str | None = None, tooltip: str = "") -> str:
    link = ""
    if href:  # Graphviz shows a cell's tooltip only on a cell that links somewhere
        link = (f' href="{html.escape(href)}" target="_top"'
                f' tooltip="{_html(tooltip or content)}"')
    return f'<tr><td align="left"{link}>{content}</td></tr>'


def _node_label(node: NodeView, loops: Sequence[EdgeView]) -> str:
    """The state's name; under it the checker's notes and, below a rule, its
    self-transitions, one `↻ label` row each (loops drawn as arrows would crowd the
    busy states that have most of them)."""
    if not node.notes and not loops:
        return _text(node.label)
    rows = [f"<tr><td>{_html(node.label)}</td></tr>"]
    rows.extend(f'<tr><td><font point-size="8">{_html(note)}</font></td></tr>'
                for note in node.notes)
    if loops:
        rows.append("<hr/>")
    for loop in loops:
        colour = MARK_EDGE_STYLE[loop.mark].get("fontcolor", EDGE_STYLE["fontcolor"])
        for line in loop.lines:
            text = f'<font point-size="9" color="{colour}">{LOOP} {_html(line.text)}</font>'
            rows.append(_cell(text, href=line.href, tooltip=line.detail))
    return ('<<table border="0" cellborder="0" cellspacing="0" cellpadding="1">'
            + "".join(rows) + "</table>>")


def _node_attributes(node: NodeView, loops: Sequence[EdgeView],
                     prefix: str) -> dict[str, str]:
    attributes: dict[str, str] = {}
    attributes.update(ROLE_NODE_STYLE[node.role])
    if node.kind is StateKind.FINAL:
        attributes.update(FINAL_STYLE)
    attributes.update(MARK_NODE_STYLE[node.mark])
    tooltip = "\n".join([node.tooltip, *(loop.details for loop in loops)]).strip()
    if tooltip:
        attributes["tooltip"] = _tooltip(tooltip)
    if node.href:
        attributes["href"] = _text(node.href)
        attributes["target"] = "_top"
    if node.role is Role.STATE:
        attributes["id"] = _text(f"node-{prefix}{node.id}")
    return attributes


def _edge_attributes(edge: EdgeView) -> dict[str, str]:
    attributes: dict[str, str] = {}
    if edge.lines:
        attributes["label"] = _lines(edge.lines)
    if edge.dashed:
        attributes["style"] = "dashed"
    attributes.update(MARK_EDGE_STYLE[edge.mark])
    if edge.details:
        attributes["tooltip"] = _tooltip(edge.details)
        if edge.lines:
            attributes["labeltooltip"] = _tooltip(edge.details)
    if edge.href:
        attributes["href"] = _text(edge.href)
        attributes["target"] = "_top"
    return attributes


def _add_machine(graph: graphviz.Digraph, view: MachineView, prefix: str) -> None:
    loops: dict[str, list[EdgeView]] = {}
    connected: set[str] = set()
    for edge in view.edges:
        connected.update((edge.source, edge.target))
        if edge.is_loop:
            loops.setdefault(edge.source, []).append(edge)
    for node in view.nodes:
        own = loops.get(node.id, [])
        graph.node(_text(prefix + node.id), _node_label(node, own),
                   **_node_attributes(node, own, prefix))
    for edge in view.edges:
        if not edge.is_loop:
            graph.edge(_text(prefix + edge.source), _text(prefix + edge.target),
                       **_edge_attributes(edge))
    # States no transition touches go to the far end instead of crowding the start.
    isolated = [node.id for node in view.nodes if node.id not in connected]
    if isolated:
        with graph.subgraph() as sink:
            sink.attr(rank="sink")
            for name in isolated:
                sink.node(_text(prefix + name))


def to_dot(views: Sequence[MachineView], *, comment: str | None = None) -> str:
    """One digraph; several machines become one cluster each, their node ids prefixed with
    `Machine/` so that two machines' states never merge."""
    name = views[0].name if len(views) == 1 else "machines"
    graph = graphviz.Digraph(_text(name), comment=comment, graph_attr=GRAPH_STYLE,
                             node_attr=NODE_STYLE, edge_attr=EDGE_STYLE)
    if len(views) == 1:
        graph.attr(label=_title(views[0].name, views[0].doc), tooltip=_tooltip(views[0].doc or ""))
        _add_machine(graph, views[0], "")
    else:
        for index, view in enumerate(views, start=1):
            with graph.subgraph(name=f"cluster_{index}") as cluster:
                cluster.attr(label=_title(view.name, view.doc), style="rounded",
                             color="#ced4da", tooltip=_tooltip(view.doc or ""))
                _add_machine(cluster, view, f"{view.name}/")
    return str(graph.source)


def header(source: str) -> str:
    """The comment on a built diagram's first line; it carries `buildplan.MARKER`."""
    return (f"Generated by fsmc from {source}. DO NOT EDIT: change the spec and run "
            "`fsmc build`.")


def machine_dot(machine: Machine, diagnostics: Iterable[Diagnostic] = (), *,
                source: str | None = None, links: Links | None = None) -> str:
    """The DOT text of one machine's diagram. `diagnostics` are the checker's findings (those
    about a state mark its node); `source` names the spec in the header comment."""
    view = machine_view(machine, diagnostics, links=links)
    return to_dot([view], comment=header(source) if source is not None else None)
