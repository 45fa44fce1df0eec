"""The report's one HTML page: sections, a table of contents, tables, embedded PNGs.

The page needs nothing but itself: figures are PNG data URIs, the style sheet
is inline, fonts are the reader's own, and there is no script. Every text
that comes from the data (run names, layer names, attrs) is escaped.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

GENERATOR = "tensorstats.report"
"""The ``<meta name="generator">`` content that marks a page this package wrote."""

DPI = 80

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       margin: 0 auto; max-width: 1500px; padding: 0 1.5em 3em; color: #1b1b1b;
       line-height: 1.45; background: #fff; }
h1 { margin: 0.8em 0 0.2em; font-size: 1.7em; }
h2 { margin-top: 1.8em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; }
h2 a, h2 a:visited { color: inherit; text-decoration: none; }
h3 { margin: 1.2em 0 0.4em; font-size: 1.05em; color: #333; }
.meta { color: #555; margin: 0 0 1em; }
nav.toc { background: #f6f6f6; border: 1px solid #ddd; padding: 0.5em 1.2em;
          display: inline-block; }
nav.toc ol { margin: 0.3em 0; padding-left: 1.2em; }
.summary li { margin: 0.25em 0; }
.row { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
figure { margin: 0.4em 0; flex: 1 1 420px; min-width: 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #e4e4e4; display: block; }
figcaption, .note { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left;
         vertical-align: top; }
th { background: #f3f3f3; }
td:last-child { white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { background: #f3f3f3; padding: 0 0.2em; }
"""


def png_data_uri(fig: Any, dpi: int = DPI) -> str:
    """A matplotlib figure as a ``data:image/png;base64,...`` URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


@dataclass(frozen=True)
class Image:
    """One embedded figure."""

    uri: str
    alt: str


@dataclass
class Block:
    """A sub-heading and its figures, side by side (one per run)."""

    heading: str | None
    images: list[Image] = field(default_factory=list)
    note: str = ""


@dataclass
class Table:
    """A table: header cells and rows of cells (numbers right-aligned)."""

    header: list[str]
    rows: list[list[object]]


@dataclass
class Section:
    """One ``<section>`` with an anchor, a heading, paragraphs, figure blocks and a table."""

    anchor: str
    title: str
    paragraphs: list[str] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)
    table: Table | None = None


def _cell(value: object, tag: str) -> str:
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    text = f"{value:.3g}" if isinstance(value, float) else str(value)
    cls = ' class="num"' if numeric else ""
    return f"<{tag}{cls}>{escape(text)}</{tag}>"


def render_table(table: Table) -> str:
    """A table as HTML.

    Examples
    --------
    >>> render_table(Table(["r"], [[0.51234]]))
    '<table><tr><th>r</th></tr><tr><td class="num">0.512</td></tr></table>'
    >>> render_table(Table(["<layer>"], []))
    '<table><tr><th>&lt;layer&gt;</th></tr></table>'
    """
    head = "<tr>" + "".join(_cell(h, "th") for h in table.header) + "</tr>"
    body = "".join("<tr>" + "".join(_cell(v, "td") for v in row) + "</tr>"
                   for row in table.rows)
    return f"<table>{head}{body}</table>"


def _block(block: Block) -> str:
    parts = []
    if block.heading:
        parts.append(f"<h3>{escape(block.heading)}</h3>")
    if block.images:
        figures = "".join(f'<figure><img src="{image.uri}" alt="{escape(image.alt)}">'
                          f"<figcaption>{escape(image.alt)}</figcaption></figure>"
                          for image in block.images)
        parts.append(f'<div class="row">{figures}</div>')
    if block.note:
        parts.append(f'<p class="note">{escape(block.note)}</p>')
    return "\n".join(parts)


def _section(section: Section) -> str:
    parts = [f'<section id="{escape(section.anchor)}">',
             f'<h2><a href="#{escape(section.anchor)}">{escape(section.title)}</a></h2>']
    parts += [f"<p>{escape(p)}</p>" for p in section.paragraphs]
    parts += [_block(b) for b in section.blocks]
    if section.table is not None:
        parts.append(render_table(section.table))
    parts.append("</section>")
    return "\n".join(parts)


def render_page(title: str, meta: str, summary: Sequence[str],
                sections: Sequence[Section]) -> str:
    """The whole page: title, table of contents, summary, then the sections in order."""
    toc = "".join(f'<li><a href="#{escape(s.anchor)}">{escape(s.title)}</a></li>'
                  for s in (Section("summary", "Summary"), *sections))
    items = "".join(f"<li>{escape(s)}</li>" for s in summary)
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta name="generator" content="{GENERATOR}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{STYLE}</style>",
        "</head>",
        "<body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">{escape(meta)}</p>',
        f'<nav class="toc"><strong>Contents</strong><ol>{toc}</ol></nav>',
        '<section id="summary" class="summary">',
        '<h2><a href="#summary">Summary</a></h2>',
        f"<ul>{items}</ul>",
        "</section>",
        *(_section(s) for s in sections),
        "</body>",
        "</html>",
        "",
    ])


def is_report(path: Any) -> bool:
    """Whether the HTML file at ``path`` is a page this package wrote (its generator tag)."""
    with open(path, "rb") as f:
        head = f.read(4096)
    return f'<meta name="generator" content="{GENERATOR}">'.encode() in head
