"""Diagram views → DOT text, through the `graphviz` package. Pure and byte-for-byte stable.

Nodes and edges are written in the order of their view (spec order); attributes are sorted by
the `graphviz` package; every string that comes from a spec is escaped for DOT (`_text`) or for
Graphviz's HTML-like labels (`html.escape`), so doc strings may hold quotes, backslashes, `<>`
and newlines.
"""

from __future__ import annotations

import html
import textwrap
from collections.abc import Iterable, Sequence

import graphviz
from graphviz.quoting import nohtml

from fsmc.dsl.diagnostics import Diagnostic
from fsmc.dsl.model import Machine, StateKind

from .view import EdgeView, Links, MachineView, Mark, NodeView, Role, machine_view

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
}
MARK_EDGE_STYLE: dict[Mark, dict[str, str]] = {
    Mark.NONE: {},
    Mark.UNREACHABLE: {"color": "#adb5bd", "fontcolor": "#868e96"},
    Mark.DEAD_END: {"color": "#e8590c"},
    Mark.ADDED: {"color": "#2b8a3e", "fontcolor": "#2b8a3e", "penwidth": "1.8"},
    Mark.REMOVED: {"color": "#c92a2a", "fontcolor": "#c92a2a", "style": "dashed",
                   "penwidth": "1.8"},
    Mark.CHANGED: {"color": "#e67700", "fontcolor": "#a35200", "penwidth": "1.8"},
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


def _text(value: str) -> str:
    """A DOT escString showing `value` literally: backslashes doubled, newlines as `\\n`; the
    `graphviz` package adds the quotes and escapes `"`; `nohtml` stops `<...>` from being taken
    for an HTML-like label."""
    escaped = value.replace("\\", "\\\\").replace("\r", "").replace("\n", "\\n")
    return nohtml(escaped.replace("\t", " "))


def _lines(lines: Iterable[str]) -> str:
    """Left-justified label lines (`\\l` ends each)."""
    return nohtml("".join(_text(line) + "\\l" for line in lines))


def _title(name: str, doc: str | None) -> str:
    parts = [f"<b>{html.escape(name)}</b>"]
    for line in textwrap.wrap(doc or "", TITLE_WIDTH):
        parts.append(f'<font point-size="10">{html.escape(line)}</font>')
    return "<" + '<br align="left"/>'.join(parts) + '<br align="left"/>>'


def _node_label(node: NodeView) -> str:
    if not node.notes:
        return _text(node.label)
    notes = "".join(f'<br/><font point-size="8">{html.escape(note)}</font>'
                    for note in node.notes)
    return f"<{html.escape(node.label)}{notes}>"


def _node_attributes(node: NodeView) -> dict[str, str]:
    attributes: dict[str, str] = {}
    attributes.update(ROLE_NODE_STYLE[node.role])
    if node.kind is StateKind.FINAL:
        attributes.update(FINAL_STYLE)
    attributes.update(MARK_NODE_STYLE[node.mark])
    if node.tooltip:
        attributes["tooltip"] = _text(node.tooltip)
    if node.href:
        attributes["href"] = _text(node.href)
        attributes["target"] = "_top"
    if node.role is Role.STATE:
        attributes["id"] = _text(f"state-{node.id}")
    return attributes


def _edge_attributes(edge: EdgeView) -> dict[str, str]:
    attributes: dict[str, str] = {}
    if edge.lines:
        attributes["label"] = _lines(edge.lines)
    if edge.dashed:
        attributes["style"] = "dashed"
    attributes.update(MARK_EDGE_STYLE[edge.mark])
    if edge.tooltip:
        attributes["tooltip"] = _text(edge.tooltip)
        attributes["labeltooltip"] = _text(edge.tooltip)
    if edge.href:
        attributes["href"] = _text(edge.href)
        attributes["target"] = "_top"
    return attributes


def _add_machine(graph: graphviz.Digraph, view: MachineView, prefix: str) -> None:
    for node in view.nodes:
        graph.node(_text(prefix + node.id), _node_label(node), **_node_attributes(node))
    for edge in view.edges:
        graph.edge(_text(prefix + edge.source), _text(prefix + edge.target),
                   **_edge_attributes(edge))


def to_dot(views: Sequence[MachineView], *, comment: str | None = None) -> str:
    """One digraph; several machines become one cluster each, their node ids prefixed with
    `Machine/` so that two machines' states never merge."""
    name = views[0].name if len(views) == 1 else "machines"
    graph = graphviz.Digraph(_text(name), comment=comment, graph_attr=GRAPH_STYLE,
                             node_attr=NODE_STYLE, edge_attr=EDGE_STYLE)
    if len(views) == 1:
        graph.attr(label=_title(views[0].name, views[0].doc), tooltip=_text(views[0].doc or ""))
        _add_machine(graph, views[0], "")
    else:
        for index, view in enumerate(views, start=1):
            with graph.subgraph(name=f"cluster_{index}") as cluster:
                cluster.attr(label=_title(view.name, view.doc), style="rounded",
                             color="#ced4da", tooltip=_text(view.doc or ""))
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
