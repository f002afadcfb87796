"""Sphinx directives that generate pexen's reference pages from the code itself.

``pexen-api MODULE`` documents every name in ``MODULE.__all__`` from its
docstring (so a new export appears on the site by itself), and
``pexen-cli`` documents every command and option of the real argument parser,
found through the ``pexen_cli_parser`` setting of conf.py ("module:function").
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import types
from collections.abc import Iterator

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective


def load_parser(spec: str) -> argparse.ArgumentParser:
    """Call the parser factory named by *spec*, ``"package.module:function"``."""
    module, _, function = spec.partition(":")
    return getattr(importlib.import_module(module), function)()


def api_directives(module_name: str) -> Iterator[str]:
    """The autodoc directives for each public name of *module_name*, in order."""
    module = importlib.import_module(module_name)
    for name in module.__all__:
        obj = getattr(module, name)
        if isinstance(obj, types.ModuleType):
            continue  # a submodule has a section of its own
        target = f"{module_name}.{name}"
        if inspect.isclass(obj):
            yield f".. autoclass:: {target}"
            yield "   :members:"
            yield "   :show-inheritance:"
        elif callable(obj):
            yield f".. autofunction:: {target}"
        else:
            yield f".. autodata:: {target}"
            if name != "__version__":
                yield "   :no-value:"
        yield ""


class ApiDirective(SphinxDirective):
    """``pexen-api MODULE``: every name the module exports, from its docstring."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        # autodoc writes reST, so the page (Markdown) hands it over as reST
        lines = StringList()
        for line in ["```{eval-rst}", *api_directives(self.arguments[0]), "```"]:
            lines.append(line, "<pexen-api>")
        container = nodes.section()
        container.document = self.state.document
        self.state.nested_parse(lines, self.content_offset, container)
        return container.children


def _option_text(action: argparse.Action) -> str:
    """``-j N, --workers N`` for an option; its metavar for a positional."""
    if not action.option_strings:
        return action.metavar or action.dest
    if action.nargs == 0:
        return ", ".join(action.option_strings)
    value = action.metavar or (
        "{" + ",".join(map(str, action.choices)) + "}" if action.choices else
        action.dest.upper()
    )
    return ", ".join(f"{opt} {value}" for opt in action.option_strings)


def _literal(text: str) -> nodes.literal_block:
    block = nodes.literal_block(text, text)
    block["language"] = "text"
    return block


def _command_nodes(title: str, parser: argparse.ArgumentParser) -> nodes.section:
    """A section for one command: usage, description, options, epilog."""
    section = nodes.section(ids=[nodes.make_id(title)])
    section += nodes.title(title, title)
    section += _literal(parser.format_usage().strip())
    if parser.description:
        section += nodes.paragraph(text=" ".join(parser.description.split()))
    options = nodes.definition_list()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        item = nodes.definition_list_item()
        term = nodes.term()
        term += nodes.literal(text=_option_text(action))
        item += term
        definition = nodes.definition()
        words = (action.help or "") % {"default": action.default, "prog": parser.prog}
        definition += nodes.paragraph(text=words)
        item += definition
        options += item
    section += options
    if parser.epilog:
        section += _literal(parser.epilog.rstrip())
    return section


class CliDirective(SphinxDirective):
    """``pexen-cli``: the ``pexen`` command and each subcommand, from the parser."""

    def run(self) -> list[nodes.Node]:
        parser = load_parser(self.config.pexen_cli_parser)
        found = [_command_nodes(parser.prog, parser)]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found.append(_command_nodes(f"{parser.prog} {name}", sub))
        return found


def setup(app: Sphinx) -> dict[str, object]:
    app.add_config_value("pexen_cli_parser", "", "env", types=[str])
    app.add_directive("pexen-api", ApiDirective)
    app.add_directive("pexen-cli", CliDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
