"""Reports: papermill executes a replication's notebook with parameters, nbconvert renders it to a
self-contained HTML page with the offline template, and an index lists every report version.

The template (``workflow/templates/offline``) drops every block that would load a script from a
CDN; images are embedded as data URIs; the code cells are hidden (reviewers read prose, tables and
figures). Strings that came from a model are escaped by the notebooks (:func:`html_table`,
:func:`escape`).
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pandas as pd

from mechrepro.io import atomic_path, read_json, write_text

STATUS_ORDER = ("pass", "fail", "not run", "not comparable")


# One pass, character by character: HTML's special characters as entities, and Markdown's punctuation as numeric
# character references, which show as the characters themselves in HTML and in Markdown but which Markdown reads
# as no syntax (no ![](url) image, no [link](javascript:...)).
_INERT = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
          **{c: f"&#{ord(c)};" for c in "\\`*_{}[]()#+-.!|~:"}}
# Control characters (a tokenizer can decode a token to NUL or ESC) are not allowed in HTML text: shown as their
# Unicode control pictures (U+2400...), so "\x00" reads as ␀; tab, newline and carriage return are left alone.
CONTROL_PICTURES = {chr(i): chr(0x2400 + i) for i in range(32) if chr(i) not in "\t\n\r"} | {"\x7f": "\u2421"}


def visible(text: str) -> str:
    """``text`` with control characters replaced by their control pictures (see :data:`CONTROL_PICTURES`)."""
    return "".join(CONTROL_PICTURES.get(c, c) for c in text)


def escape(text) -> str:
    """``text`` made inert in both HTML and Markdown outputs. For every string a notebook interpolates into
    ``HTML(...)`` or ``Markdown(...)``."""
    return "".join(_INERT.get(c, CONTROL_PICTURES.get(c, c)) for c in str(text))


def html_table(df: pd.DataFrame, classes: str = "mr", status_col: str | None = None) -> str:
    """An HTML table with every cell escaped (token strings can hold markup); optional status colours."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for _, r in df.iterrows():
        cls = ""
        if status_col:
            cls = f' class="st-{re.sub(r"[^a-z]+", "-", str(r[status_col]).lower())}"'
        cells = "".join(f"<td>{html.escape(visible(_fmt(v)))}</td>" for v in r.to_numpy())
        rows.append(f"<tr{cls}>{cells}</tr>")
    return f'<table class="{html.escape(classes)}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "—"
    if isinstance(v, float):
        return f"{int(v):,}" if v.is_integer() and abs(v) >= 1000 else f"{v:.4g}"
    return str(v)


def claims_frame(claims: dict) -> pd.DataFrame:
    rows = claims["claims"]
    return pd.DataFrame([{"claim": r["claim"], "source": r["source"], "paper": r["paper_value"],
                          "threshold": f"{r['comparator']} {r['value']:g}" + (f" ± {r['tolerance']:g}" if r["tolerance"] else "")
                          + f" ({r['threshold_source']})",
                          "ours": r["ours"], "status": r["status"], "why": r["why"]} for r in rows])


def render(notebook: str | Path, html_out: str | Path, parameters: dict, template_dir: str | Path,
           executed_out: str | Path, cwd: str | Path | None = None) -> None:
    """Execute ``notebook`` with ``parameters``; write the executed notebook and the HTML report atomically."""
    import nbformat
    import papermill as pm
    from nbconvert import HTMLExporter

    html_out = Path(html_out)
    with atomic_path(executed_out) as tmp_nb:
        pm.execute_notebook(str(notebook), str(tmp_nb), parameters=parameters, kernel_name="python3",
                            cwd=str(cwd) if cwd else None, progress_bar=False, log_output=False)
        nb = nbformat.read(tmp_nb, as_version=4)
        template_dir = Path(template_dir).resolve()
        exporter = HTMLExporter(extra_template_basedirs=[str(template_dir.parent)], template_name=template_dir.name,
                                exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
                                embed_images=True)
        body, _ = exporter.from_notebook_node(nb)
    write_text(html_out, body)


def render_with_provenance(params, notebook: str | Path, out, parameters: dict) -> dict:
    """Collect provenance, write it to ``out.provenance`` and render ``notebook`` to ``out.html``
    (executed copy at ``out.notebook``). ``params`` carries repo, config, config_hash, models, seeds,
    benchmarks (glob patterns) and template, as the report rules pass them; the notebook receives
    ``provenance_path`` on top of ``parameters``."""
    import glob

    from mechrepro import provenance
    from mechrepro.io import write_json

    cfg = params.config
    prov = provenance.collect(repo=params.repo, scale=cfg["scale"], config=cfg, cfg_hash=params.config_hash,
                              models=list(params.models), seeds=dict(params.seeds),
                              benchmarks=sorted({f for pat in params.benchmarks for f in glob.glob(pat)}))
    write_json(out.provenance, prov)
    render(notebook, out.html, template_dir=params.template, executed_out=out.notebook, cwd=Path.cwd(),
           parameters={**parameters, "provenance_path": str(Path(out.provenance).resolve())})
    return prov


def write_manifest(path: str | Path, version: str, scale: str, claims: dict[str, dict], provenance: dict) -> None:
    """Per-version summary that the index reads: claim counts per report."""
    from mechrepro.io import write_json

    write_json(path, {"version": version, "scale": scale, "commit": provenance.get("commit"),
                      "dirty": provenance.get("dirty"), "config_hash": provenance.get("config_hash"),
                      "reports": {slug: c["summary"] for slug, c in claims.items()}})


def build_index(scale_dir: str | Path, out: str | Path) -> None:
    """``reports/<scale>/index.html``: every version folder with a manifest, newest first."""
    scale_dir = Path(scale_dir)
    manifests = []
    for m in scale_dir.glob("*/manifest.json"):
        data = read_json(m)
        data["mtime"] = m.stat().st_mtime
        manifests.append(data)
    manifests.sort(key=lambda d: d["mtime"], reverse=True)
    rows = []
    for d in manifests:
        v = html.escape(d["version"])
        for slug, s in sorted(d["reports"].items()):
            counts = ", ".join(f"{s.get(k, 0)} {k}" for k in STATUS_ORDER)
            rows.append(f'<tr><td>{v}</td><td><a href="{v}/{html.escape(slug)}.html">{html.escape(slug)}</a></td>'
                        f"<td>{html.escape(counts)}</td></tr>")
    scale = html.escape(scale_dir.name)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>mechrepro reports: {scale}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto}} td,th{{border:1px solid #ccc;padding:4px 10px}}
table{{border-collapse:collapse}}</style></head>
<body><h1>mechrepro reports — scale <code>{scale}</code></h1>
<p>Each version is <code>&lt;commit&gt;[-dirty]-&lt;config hash&gt;</code>; earlier versions are kept.</p>
<table><thead><tr><th>version</th><th>report</th><th>claims</th></tr></thead><tbody>
{''.join(rows)}
</tbody></table>
</body></html>
"""
    write_text(out, page)
