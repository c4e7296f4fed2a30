"""A self-contained HTML page: inline style, figures as base64 PNG, no external reference.

The report is meant to be mailed, attached to an issue or opened years later, so the page
carries everything it shows: no script, no stylesheet link, no web font, no remote image.
Every piece of text that comes from data (session ids, file names) is escaped.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f4f4f4; }
tr.mean td { font-weight: bold; background: #fafafa; }
td.best { background: #e6f4ea; }
img { max-width: 100%; display: block; margin: 0.6em 0; }
p.note { color: #666; font-size: 0.9em; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""


@dataclass
class Section:
    id: str  # anchor, e.g. "r2-table"
    title: str
    body: str  # HTML


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}">'


def fmt(value, digits: int = 4) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.{digits}f}"
    return esc(value)


def table(header: list[str], rows: list[list], *, classes: list[str] | None = None,
          best: list[set[int]] | None = None) -> str:
    """An HTML table; ``classes[i]`` is row i's class, ``best[i]`` the highlighted columns."""
    out = ["<table>", "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"]
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        cells = []
        for j, v in enumerate(row):
            mark = ' class="best"' if best and j in best[i] else ""
            cells.append(f"<td{mark}>{fmt(v)}</td>")
        out.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def paragraph(text: str, *, note: bool = False) -> str:
    """A paragraph of already-escaped HTML (use :func:`esc` on data inside it)."""
    return f'<p class="note">{text}</p>' if note else f"<p>{text}</p>"


def page(title: str, subtitle: str, sections: list[Section]) -> str:
    toc = " &middot; ".join(f'<a href="#{s.id}">{esc(s.title)}</a>' for s in sections)
    body = "\n".join(f'<h2 id="{s.id}">{esc(s.title)}</h2>\n{s.body}' for s in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{esc(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{esc(title)}</h1>\n<p class=\"note\">{subtitle}</p>\n<p>{toc}</p>\n{body}\n</body>\n</html>\n"
    )
