"""HTML building blocks shared by the image reports and the run index.

Every value that comes from the user (file names, sample-sheet values, label names,
error messages) goes through :func:`esc` before it reaches the page. Pages carry a
Content-Security-Policy that allows images from data URIs only and scripts only by
hash, so a value that escaped escaping still could not load or run anything.
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
import re
from importlib import resources
from urllib.parse import quote

from vlm_micro import __version__


def esc(value) -> str:
    """Escape any value for HTML text and attribute values."""
    return html.escape("" if value is None else str(value), quote=True)


def href(*parts: str) -> str:
    """Return an escaped relative URL built from path parts, each percent-encoded."""
    return esc("/".join(quote(part, safe="") if part not in ("..", ".") else part for part in parts))


def is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt_number(value, digits: int = 3) -> str:
    """Format a number with ``digits`` significant digits, or return an en dash when missing."""
    if is_missing(value) or isinstance(value, str):
        return "–" if is_missing(value) or value == "" else esc(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}"


def fmt_percent(value, digits: int = 1) -> str:
    """Format a fraction (0 to 1) as a percentage, or return an en dash when missing."""
    if is_missing(value):
        return "–"
    return f"{100 * float(value):.{digits}f} %"


def swatch(color: str) -> str:
    return f'<span class="swatch" style="background:{esc(color)}"></span>'


def kv_table(rows: list[tuple[str, str]]) -> str:
    """Build a two-column table. Labels are escaped here, but values must be HTML already."""
    body = "".join(f"<tr><th>{esc(label)}</th><td>{value}</td></tr>" for label, value in rows)
    return f'<table class="kv">{body}</table>'


def data_table(header: list[str], rows: list[list], numeric: set[int] = frozenset(), table_id: str = "",
               sortable: bool = False, row_classes: list[str] | None = None) -> str:
    """Build an HTML table. Header labels are escaped here, but cells must be HTML already.

    A cell is an HTML string or a pair (HTML, sort key). The sort key goes to the
    ``data-sort`` attribute that the index page's sorting script reads. Columns whose
    index is in ``numeric`` are right-aligned.
    """
    head = "".join(f'<th class="num" scope="col">{esc(label)}</th>' if index in numeric
                   else f'<th scope="col">{esc(label)}</th>' for index, label in enumerate(header))
    body = []
    for row_index, row in enumerate(rows):
        cells = []
        for index, cell in enumerate(row):
            content, sort_key = cell if isinstance(cell, tuple) else (cell, None)
            attributes = ' class="num"' if index in numeric else ""
            if sort_key is not None:
                attributes += f' data-sort="{esc(sort_key)}"'
            cells.append(f"<td{attributes}>{content}</td>")
        row_class = row_classes[row_index] if row_classes else ""
        opening = f'<tr class="{esc(row_class)}">' if row_class else "<tr>"
        body.append(opening + "".join(cells) + "</tr>")
    attributes = ""
    if table_id:
        attributes += f' id="{esc(table_id)}"'
    if sortable:
        attributes += ' class="sortable-table"'
    return (f'<div class="scroll"><table{attributes}><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def img_tag(uri: str, alt: str, width: int | None = None) -> str:
    size = f' width="{int(width)}"' if width else ""
    return f'<img src="{esc(uri)}" alt="{esc(alt)}"{size}>'


def template_text(name: str) -> str:
    """Return a file of the package's ``reporting/templates`` folder as text."""
    return resources.files("vlm_micro.reporting").joinpath("templates", name).read_text(encoding="utf-8")


def page(title: str, body: str, script: str = "", wide: bool = False) -> str:
    """Wrap a body in a complete, self-contained HTML document.

    ``script`` is inline JavaScript allowed by its SHA-256 in the page's
    Content-Security-Policy. Nothing else may run, and images load only from data URIs.
    ``wide`` allows a wider page for large tables.
    """
    script_src = "'none'"
    script_tag = ""
    if script:
        digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
        script_src = f"'sha256-{digest}'"
        script_tag = f"<script>{script}</script>"
    main_tag = '<main class="wide">' if wide else "<main>"
    policy = f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src {script_src}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="generator" content="vlm-micro {esc(__version__)}">\n'
        f"<title>{esc(title)}</title>\n<style>\n{template_text('report.css')}</style>\n</head>\n"
        f"<body>\n{main_tag}\n{body}\n</main>\n{script_tag}\n</body>\n</html>\n"
    )


def readable_time(timestamp: str) -> str:
    """Turn an ISO 8601 UTC timestamp into ``YYYY-MM-DD HH:MM UTC`` and return other text unchanged."""
    match = re.fullmatch(r"(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})(:\d{2}(\.\d+)?)?(\+00:00|Z)", timestamp or "")
    return f"{match.group(1)} {match.group(2)} UTC" if match else str(timestamp)
