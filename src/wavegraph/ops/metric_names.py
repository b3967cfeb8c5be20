"""Which metric names wavegraph exports, and which ones a PromQL expression reads.

:func:`exported_metric_names` is the live registry: every module that registers a metric on
:data:`wavegraph.metrics.REGISTRY` is imported (found by the ``registry=REGISTRY`` argument in its
source), then the registry is collected. Series names follow the text exposition format of
``prometheus_client``: a counter ``x`` is read as ``x_total`` (and ``x_created``), a histogram as
``x_bucket``/``x_sum``/``x_count``, a gauge as ``x``.

:func:`metric_names` parses an expression with ``promql-parser`` (Prometheus's own grammar, in Rust)
and returns the names of its vector selectors, ``foo`` and ``{__name__="foo"}`` alike;
:func:`unknown_metrics` checks them against the registry (a ``__name__=~"re"`` selector must match
at least one exported name).
"""

from __future__ import annotations

import ast
import functools
import importlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import promql_parser

from wavegraph.errors import WavegraphError

__all__ = [
    "InvalidQuery",
    "Selectors",
    "exported_metric_names",
    "metric_modules",
    "metric_names",
    "unknown_metrics",
]

_PACKAGE = Path(__file__).resolve().parents[1]
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}


class InvalidQuery(WavegraphError):
    """A PromQL expression does not parse; the message quotes the parser's reason."""


@dataclass(frozen=True)
class Selectors:
    """The metric names an expression selects: exact names, and ``__name__=~`` regexes."""

    names: frozenset[str] = field(default_factory=frozenset)
    patterns: frozenset[str] = field(default_factory=frozenset)


def _registers(source: str) -> bool:
    """``source`` calls something with ``registry=REGISTRY`` (or ``registry=metrics.REGISTRY``)."""
    if "REGISTRY" not in source:
        return False
    for node in ast.walk(ast.parse(source)):
        for kw in node.keywords if isinstance(node, ast.Call) else ():
            value = kw.value
            name = value.id if isinstance(value, ast.Name) else getattr(value, "attr", None)
            if kw.arg == "registry" and name == "REGISTRY":
                return True
    return False


def metric_modules() -> list[str]:
    """The wavegraph modules whose source registers a metric on the shared registry."""
    found = []
    for path in sorted(_PACKAGE.rglob("*.py")):
        if _registers(path.read_text(encoding="utf-8")):
            parts = path.relative_to(_PACKAGE.parent).with_suffix("").parts
            found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


@functools.cache
def exported_metric_names() -> frozenset[str]:
    """Every series name wavegraph's processes can expose on ``/metrics``."""
    from wavegraph.metrics import REGISTRY

    for module in metric_modules():
        importlib.import_module(module)
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return frozenset(names)


def metric_names(expr: str) -> Selectors:
    """The metric names ``expr`` selects (raises :class:`InvalidQuery` when it does not parse)."""
    try:
        tree = promql_parser.parse(expr)
    except ValueError as exc:
        raise InvalidQuery(f"PromQL does not parse: {exc}: {expr!r}") from None
    names: set[str] = set()
    patterns: set[str] = set()

    def visit(node: object) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            for matcher in node.matchers.matchers:
                if matcher.name != "__name__":
                    continue
                if matcher.op == promql_parser.MatchOp.Equal:
                    names.add(matcher.value)
                elif matcher.op == promql_parser.MatchOp.Re:
                    patterns.add(matcher.value)
        return True

    promql_parser.walk(tree, visit)
    return Selectors(frozenset(names), frozenset(patterns))


def unknown_metrics(expr: str, known: Iterable[str] | None = None) -> list[str]:
    """What ``expr`` reads that wavegraph does not export (empty when every selector is known)."""
    exported = frozenset(known) if known is not None else exported_metric_names()
    selectors = metric_names(expr)
    unknown = sorted(selectors.names - exported)
    unknown += [
        f"{{__name__=~{p!r}}}"
        for p in sorted(selectors.patterns)
        if not any(re.fullmatch(p, name) for name in exported)
    ]
    return unknown
