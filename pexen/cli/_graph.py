"""``pexen graph``: the requires/provides graph as Graphviz DOT or Mermaid.

Tasks are nodes, labelled by call path (and priority when it is not 0). An
edge goes from each provider of a tag to each task requiring it, labelled by
the tag. Locks are nodes of their own, joined to the tasks holding them by
lines labelled ``claims`` (exclusive: dashed in DOT, thick in Mermaid) or
``uses`` (shared: dotted). A
required tag that no task provides gets a node marked ``missing``, so a broken
graph can still be drawn and looked at.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from pexen.cli._console import one_line
from pexen.sched.meta import retrieve_meta

FORMATS = ("dot", "mermaid")


def tag_label(tag: Any) -> str:
    """Show a tag as a person wrote it: strings bare, anything else as its repr."""
    return one_line(tag) if isinstance(tag, str) else repr(tag)


def _sorted(tags: Any) -> list[Any]:
    return sorted(tags, key=repr)


@attrs.frozen
class GraphModel:
    """The nodes and edges both formats draw, in a stable order."""

    labels: list[str]  # per task
    edges: list[tuple[int, int, str]]  # provider, requirer, tag
    locks: list[str]
    holds: list[tuple[int, int, str]]  # task, lock, "claims" | "uses"
    missing: list[str]
    needs_missing: list[tuple[int, int]]  # missing tag, requirer


def build_model(tasks: Sequence[Any], names: Sequence[str]) -> GraphModel:
    """Work out the graph of *tasks*, named by *names*."""
    metas = [retrieve_meta(task) for task in tasks]
    tag2providers: dict[Any, list[int]] = {}
    for index, meta in enumerate(metas):
        for tag in _sorted(meta.provides) if meta else ():
            tag2providers.setdefault(tag, []).append(index)
    labels: list[str] = []
    edges: list[tuple[int, int, str]] = []
    holds: list[tuple[int, int, str]] = []
    needs_missing: list[tuple[int, int]] = []
    lock2index: dict[Any, int] = {}
    missing2index: dict[Any, int] = {}
    for index, (meta, name) in enumerate(zip(metas, names, strict=True)):
        if meta is None:
            labels.append(name)
            continue
        priority = "" if meta.priority == 0 else f"\npriority {meta.priority!r}"
        labels.append(name + priority)
        for tag in _sorted(meta.requires):
            providers = tag2providers.get(tag)
            if providers:
                edges.extend((p, index, tag_label(tag)) for p in providers)
            else:
                at = missing2index.setdefault(tag, len(missing2index))
                needs_missing.append((at, index))
        for kind, resources in (("claims", meta.claims), ("uses", meta.uses)):
            for res in _sorted(resources):
                holds.append((index, lock2index.setdefault(res, len(lock2index)), kind))
    edges.sort()
    return GraphModel(
        labels,
        edges,
        [tag_label(res) for res in lock2index],
        holds,
        [tag_label(tag) for tag in missing2index],
        needs_missing,
    )


def _dot_str(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def to_dot(model: GraphModel) -> str:
    """Render *model* as a Graphviz digraph (``dot -Tsvg`` draws it)."""
    out = [
        "digraph pexen {",
        "    rankdir=LR;",
        '    node [shape=box, fontname="Helvetica"];',
        '    edge [fontname="Helvetica", fontsize=10];',
    ]
    out += [
        f"    t{i} [label={_dot_str(label)}];" for i, label in enumerate(model.labels)
    ]
    out += [f"    t{p} -> t{r} [label={_dot_str(tag)}];" for p, r, tag in model.edges]
    out += [
        f"    lock{i} [label={_dot_str('lock: ' + name)}, shape=hexagon, style=dashed];"
        for i, name in enumerate(model.locks)
    ]
    styles = {"claims": "dashed", "uses": "dotted"}
    out += [
        f"    t{t} -> lock{lk} [label={kind}, style={styles[kind]}, dir=none];"
        for t, lk, kind in model.holds
    ]
    out += [
        f"    missing{i} [label={_dot_str('missing: ' + tag)}, shape=box, "
        "style=dashed, color=red, fontcolor=red];"
        for i, tag in enumerate(model.missing)
    ]
    out += [
        f"    missing{m} -> t{r} [color=red, style=dashed];"
        for m, r in model.needs_missing
    ]
    out.append("}")
    return "\n".join(out) + "\n"


def _mermaid_str(text: str) -> str:
    for char, entity in (
        ("&", "#amp;"),
        ('"', "#quot;"),
        ("<", "#lt;"),
        (">", "#gt;"),
        ("|", "#124;"),
    ):
        text = text.replace(char, entity)
    return '"' + text.replace("\n", "<br>") + '"'


def to_mermaid(model: GraphModel) -> str:
    """Render *model* as a Mermaid flowchart (for a ```mermaid block in Markdown)."""
    out = ["flowchart LR"]
    out += [f"    t{i}[{_mermaid_str(label)}]" for i, label in enumerate(model.labels)]
    out += [f"    t{p} -->|{_mermaid_str(tag)}| t{r}" for p, r, tag in model.edges]
    out += [
        f"    lock{i}{{{{{_mermaid_str('lock: ' + name)}}}}}"
        for i, name in enumerate(model.locks)
    ]
    links = {"claims": "===", "uses": "-.-"}
    out += [f"    t{t} {links[kind]}|{kind}| lock{lk}" for t, lk, kind in model.holds]
    out += [
        f"    missing{i}[{_mermaid_str('missing: ' + tag)}]:::missing"
        for i, tag in enumerate(model.missing)
    ]
    out += [f"    missing{m} -.-> t{r}" for m, r in model.needs_missing]
    if model.missing:
        out.append("    classDef missing stroke:#d00,color:#d00,stroke-dasharray:4")
    return "\n".join(out) + "\n"


def render(fmt: str, tasks: Sequence[Any], names: Sequence[str]) -> str:
    """The graph of *tasks* in format *fmt* (one of ``FORMATS``)."""
    model = build_model(tasks, names)
    return to_dot(model) if fmt == "dot" else to_mermaid(model)
