"""A node-link picture (SVG) of an explained neighbourhood: edge width ∝ HAA attention.

Layout: :func:`networkx.shell_layout` with the explained node in the centre, its neighbours on a first
ring in attention order (clockwise from 12 o'clock) and hop-2 nodes on an outer ring, so the picture
is the same for the same answer and costs O(nodes + edges) (no force simulation: 1,000 nodes draw in
a few milliseconds). Edges from the explained node are drawn in orange with a width proportional to
their attention (the strongest ``MAX_WIDTH`` px); other edges are thin grey lines. Node area ∝
PageRank. The explained node and the ``MAX_LABELS`` − 1 first others are labelled; a legend explains
the encodings. Text is XML-escaped; the document is a standalone SVG 1.1 file.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import networkx as nx

__all__ = ["explanation_svg", "svg_base64"]

SIZE = 640  # px, square
MARGIN = 70  # room for labels around the outer ring
MAX_WIDTH = 10.0
MAX_LABELS = 40
LEGEND_H = 64


def explanation_svg(
    node: str,
    nodes: Sequence[Mapping[str, Any]],
    edges: Sequence[Mapping[str, Any]],
    attn: Sequence[Mapping[str, Any]],
) -> str:
    """The SVG document of an explanation (the ``node``/``nodes``/``edges``/``attn`` of the JSON)."""
    weight = {a["dst"]: float(a["weight"]) for a in attn}
    adjacent = {e["dst"] for e in edges if e["src"] == node} | {e["src"] for e in edges if e["dst"] == node}
    ids = [str(n["id"]) for n in nodes]
    hop1 = [i for i in ids if i != node and (i in adjacent or i in weight)]
    hop2 = [i for i in ids if i != node and i not in adjacent and i not in weight]
    shells = [s for s in ([node], hop1, hop2) if s]
    pos = nx.shell_layout(nx.empty_graph(ids), nlist=shells, rotate=0.0) if len(ids) > 1 else {node: (0, 0)}
    half = SIZE / 2 - MARGIN

    def xy(i: str) -> tuple[float, float]:
        x, y = pos[i]
        # shell_layout starts at 3 o'clock counter-clockwise; turn to 12 o'clock clockwise
        return SIZE / 2 + float(y) * half, SIZE / 2 - float(x) * half

    top = max(weight.values(), default=0.0) or 1.0
    pr = {str(n["id"]): float(n.get("pagerank") or 0.0) for n in nodes}
    pr_top = max(pr.values(), default=0.0) or 1.0
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{SIZE}" height="{SIZE + LEGEND_H}" '
        f'viewBox="0 0 {SIZE} {SIZE + LEGEND_H}" font-family="sans-serif" font-size="11">',
        f"<title>{escape(f'HAA attention of {node}')}</title>",
        f'<rect width="{SIZE}" height="{SIZE + LEGEND_H}" fill="white"/>',
        '<g class="edges" stroke-linecap="round">',
    ]
    for e in edges:
        src, dst = str(e["src"]), str(e["dst"])
        if src not in pos or dst not in pos:
            continue
        (x1, y1), (x2, y2) = xy(src), xy(dst)
        other = dst if src == node else src if dst == node else None
        if other is not None and other in weight:
            width = max(0.5, MAX_WIDTH * weight[other] / top)
            style = f'stroke="#e8590c" stroke-opacity="0.8" stroke-width="{width:.2f}"'
            tip = f"{src} → {dst}: attention {weight[other]:.4f}"
        else:
            style = 'stroke="#adb5bd" stroke-opacity="0.6" stroke-width="0.7"'
            tip = f"{src} → {dst} ({e.get('rel')}, weight {e.get('weight')})"
        out.append(
            f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" {style}>'
            f"<title>{escape(tip)}</title></line>"
        )
    out.append('</g><g class="nodes" stroke="white" stroke-width="1">')
    for i in ids:
        x, y = xy(i)
        r = 3.0 + 9.0 * math.sqrt(pr[i] / pr_top)
        fill = "#1c7ed6" if i == node else "#495057" if i in hop1 else "#ced4da"
        out.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" fill="{fill}">'
            f"<title>{escape(f'{i}: PageRank {pr[i]:.4g}')}</title></circle>"
        )
    out.append('</g><g class="labels" fill="#212529">')
    for i in ids[:MAX_LABELS]:
        x, y = xy(i)
        anchor = "middle" if abs(x - SIZE / 2) < 1 else "start" if x > SIZE / 2 else "end"
        dx = 0 if anchor == "middle" else 8 if anchor == "start" else -8
        weight_text = "bold" if i == node else "normal"
        out.append(
            f'<text x="{x + dx:.1f}" y="{y - 8 if anchor == "middle" else y + 4:.1f}" text-anchor="{anchor}" '
            f'font-weight="{weight_text}">{escape(i)}</text>'
        )
    out.append("</g>")
    out.extend(_legend(node, len(hop1), len(hop2), top))
    out.append("</svg>")
    return "\n".join(out)


def _legend(node: str, hop1: int, hop2: int, top: float) -> list[str]:
    y = SIZE + 14
    return [
        f'<g class="legend" transform="translate(12,{y})">',
        f'<line x1="0" y1="0" x2="28" y2="0" stroke="#e8590c" stroke-width="{MAX_WIDTH}"/>',
        f'<text x="36" y="4">attention of {quoteattr(node)[1:-1]} (widest = {top:.3f})</text>',
        '<line x1="0" y1="20" x2="28" y2="20" stroke="#adb5bd" stroke-width="1"/>',
        '<text x="36" y="24">other relationship</text>',
        '<circle cx="330" cy="0" r="6" fill="#1c7ed6"/><text x="342" y="4">explained node</text>',
        f'<circle cx="330" cy="20" r="6" fill="#495057"/><text x="342" y="24">hop 1 ({hop1})</text>',
        f'<circle cx="460" cy="20" r="6" fill="#ced4da"/><text x="472" y="24">hop 2 ({hop2})</text>',
        '<text x="460" y="4">node area ∝ PageRank</text>',
        "</g>",
    ]


def svg_base64(svg: str) -> str:
    """``svg`` as UTF-8, base64-encoded (the ``svg`` field of the JSON)."""
    return base64.b64encode(svg.encode()).decode("ascii")
