"""Tables, lines and figures as self-contained HTML: the same TableSpec the terminal shows.

A report must open anywhere (a laptop, a CI artifact, a Space download) with no server and no
network, so images are embedded as base64 PNG and the style sheet is inline.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from advisor.output.tables import TableSpec

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1100px;padding:1rem;
color:#1f2328;line-height:1.45}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #d0d7de;padding-bottom:.3rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem;display:block;overflow-x:auto;max-width:100%}
th,td{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}tr.hl td{background:#fff8c5}
pre{background:#f6f8fa;padding:.6rem;overflow-x:auto;white-space:pre-wrap;word-break:break-all}
.callout{border-left:4px solid #bf8700;background:#fff8c5;padding:.5rem .8rem;margin:.8rem 0}
.ok{border-left:4px solid #1a7f37;background:#dafbe1;padding:.5rem .8rem;margin:.8rem 0}
img{max-width:100%;height:auto}.muted{color:#59636e;font-size:.9rem}
"""


def escape(text: object) -> str:
    return html.escape(str(text), quote=True)


def table_html(spec: TableSpec) -> str:
    if not spec.rows:
        return ""  # an empty table says nothing; the caller writes a sentence instead
    head = "".join(f"<th>{escape(c.header)}</th>" for c in spec.columns)
    body = []
    for i, row in enumerate(spec.rows):
        cells = "".join(
            f'<td class="num">{escape(v)}</td>' if c.justify == "right" else f"<td>{escape(v)}</td>"
            for c, v in zip(spec.columns, row, strict=False)
        )
        body.append(f'<tr class="hl">{cells}</tr>' if i in spec.highlight_rows else f"<tr>{cells}</tr>")
    title = f"<caption>{escape(spec.title)}</caption>" if spec.title else ""
    return f"<table>{title}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def lines_html(lines: list[str] | tuple[str, ...], css_class: str | None = None) -> str:
    if not lines:
        return ""
    items = "".join(f"<p>{escape(line)}</p>" for line in lines if line)
    return f'<div class="{css_class}">{items}</div>' if css_class else items


def image_html(path: Path | None, alt: str) -> str:
    if path is None or not Path(path).is_file():
        return ""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def code_html(text: str) -> str:
    return f"<pre><code>{escape(text)}</code></pre>"


def page(title: str, sections: list[str]) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{escape(title)}</h1>{''.join(sections)}</body></html>\n"
    )
