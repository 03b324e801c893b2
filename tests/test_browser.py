"""Reports in a real browser (headless Chromium, offline): the checker itself, with negative controls that
prove it can fail, and model strings carrying markup rendered through the report machinery as text.

The pipeline's own reports and index are checked with the same :func:`browser.check_report` by the
end-to-end test. Chromium is required: when missing it is installed with apt-get (as root), otherwise the
tests fail; they are never skipped.
"""

from __future__ import annotations

import base64
import html
import http.server
import io
import threading
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from browser import Browser, check_report, image_is_blank, page_problems, require_chromium  # noqa: E402
from mechrepro.report import html_table  # noqa: E402
from mechrepro.sae.metrics import render_context_html  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OFFLINE_TEMPLATE = REPO / "workflow" / "templates" / "offline"

HOSTILE = [
    "<script>alert(1)</script>",
    "\"><img src=x onerror=document.title='pwned'>",
    '"><img src=x onerror=alert(2)>',
    "<script>window.pwned=1</script>",
    "'><svg onload=window.pwned=2>",
    "</td></tr></table></style></title><script>window.pwned=3</script>",
]

# What a successful injection leaves behind; every expression is false on a page that shows the strings as text.
XSS_PROBES = {
    "img_src_x": "document.querySelectorAll('img[src=\"x\"]').length",
    "event_handler_attrs": "[...document.querySelectorAll('*')].filter(e => [...e.attributes]"
                           ".some(a => a.name.toLowerCase().startsWith('on'))).length",
    "hostile_scripts": "[...document.scripts].filter(s => /alert|pwned/.test(s.text)).length",
    "sentinel": "typeof window.pwned === 'undefined' ? null : String(window.pwned)",
    "javascript_links": "document.querySelectorAll('a[href^=\"javascript:\" i]').length",
}


@pytest.fixture(scope="session")
def chrome():
    """One headless Chromium for the session; each page opens in a fresh tab."""
    with Browser(require_chromium()) as b:
        yield b


def png_figure(blank: bool = False) -> bytes:
    fig, ax = plt.subplots(figsize=(3, 2), dpi=60)
    if blank:
        ax.set_axis_off()
    else:
        ax.plot([0, 1, 2], [0, 1, 0.5])
        ax.set_title("a figure")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def write_page(tmp_path: Path, body: str, name: str = "page.html", title: str = "test page") -> Path:
    path = tmp_path / name
    path.write_text(f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{title}</title></head>'
                    f"<body>{body}</body></html>", encoding="utf-8")
    return path


def xss_findings(page) -> list[str]:
    found = [f"dialog: {d}" for d in page.dialogs]
    if page.title == "pwned":
        found.append("document.title was set to 'pwned'")
    found += [f"{k}: {v}" for k, v in page.js.items() if v]
    found += [f"not shown as text: {s!r}" for s in HOSTILE if s not in page.text]
    return found


# -- the helper --------------------------------------------------------------------------------------------------

def test_image_is_blank():
    white = io.BytesIO()
    Image.new("RGB", (40, 30), (255, 255, 255)).save(white, format="PNG")
    clear = io.BytesIO()
    Image.new("RGBA", (40, 30), (0, 0, 0, 0)).save(clear, format="PNG")
    assert image_is_blank(white.getvalue()) and image_is_blank(clear.getvalue())
    assert image_is_blank(png_figure(blank=True)) and image_is_blank(b"not a png")
    assert not image_is_blank(png_figure())


def test_good_page_has_no_problems(chrome, tmp_path):
    path = write_page(tmp_path, f'<h1>Report</h1><p>Some prose.</p><img src="{data_uri(png_figure())}">')
    page = chrome.open(path)
    assert page_problems(page, min_images=1) == []
    assert page.requests[0] == path.as_uri() and page.external == []
    assert "Some prose." in page.text and page.title == "test page"
    assert page.images[0].naturalWidth == 180 and page.images[0].naturalHeight == 120
    assert not image_is_blank(page.screenshot)
    assert check_report(path, browser=chrome, min_images=1) == []


@pytest.mark.parametrize("body, expected", [
    ('<p>text</p><img src="https://example.com/x.png">', "external request: https://example.com/x.png"),
    ('<p>text</p><link rel="stylesheet" href="https://cdn.example.org/s.css">', "external request: https://cdn.example.org"),
    ('<p>text</p><script>console.error("boom")</script>', "console error: console.error: boom"),
    ('<p>text</p><script>throw new Error("kaput")</script>', "uncaught exception: Error: kaput"),
    ('<p>text</p><script>alert("hi")</script>', "dialog opened: alert: hi"),
    ("", "renders blank"),
    ('<p>text</p><img src="data:image/png;base64,iVBORw0KGgoAAAAN">', "is broken"),
    ('<p>text</p><img src="missing.png">', "is broken"),
    ("<p>text</p>", "0 images, expected at least 1"),
    ("<p>text</p><img src='{blank}'>", "is blank (one colour)"),
])
def test_checker_catches(chrome, tmp_path, body, expected):
    path = write_page(tmp_path, body.replace("{blank}", data_uri(png_figure(blank=True))))
    problems = check_report(path, browser=chrome, min_images=1)
    assert any(expected in p for p in problems), problems


def test_checker_catches_a_page_that_never_goes_quiet(chrome, tmp_path):
    path = write_page(tmp_path, "<p>text</p><script>setInterval(() => fetch('https://example.com/').catch(() => 0), 100)"
                                "</script>")
    t0 = time.monotonic()
    problems = check_report(path, browser=chrome, timeout=4)
    assert time.monotonic() - t0 < 6
    assert any("never stopped making requests" in p for p in problems)
    assert any("external request: https://example.com/" in p for p in problems)


@pytest.mark.parametrize("emulate_offline", [True, False], ids=["emulated-offline", "launch-flags-only"])
def test_no_request_leaves_the_machine(chrome, tmp_path, emulate_offline):
    """A live HTTP server on loopback gets no hit, even with only the launch flags (resolver, proxy) in the way;
    the attempts are still recorded."""
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        path = write_page(tmp_path, f'<p>text</p><img src="http://127.0.0.1:{port}/img.png">'
                                    f'<img src="http://localhost:{port}/img2.png">'
                                    f'<script>fetch("http://127.0.0.1:{port}/fetch").catch(() => 0)</script>')
        page = chrome.open(path, emulate_offline=emulate_offline)
    finally:
        server.shutdown()
        server.server_close()
    assert hits == []
    assert {f"http://127.0.0.1:{port}/img.png", f"http://localhost:{port}/img2.png",
            f"http://127.0.0.1:{port}/fetch"} <= set(page.external)


# -- model strings carrying markup render as text ------------------------------------------------------------------

def hostile_frame() -> pd.DataFrame:
    return pd.DataFrame({"prompt": HOSTILE, "token": HOSTILE[::-1], "status": ["pass", "fail"] * (len(HOSTILE) // 2)})


def test_xss_probes_detect_an_unescaped_page(chrome, tmp_path):
    """Negative control: the same strings pasted in raw do execute, and the probes see it."""
    path = write_page(tmp_path, "<div>" + "".join(HOSTILE) + "</div>")
    page = chrome.open(path, js=XSS_PROBES)
    found = xss_findings(page)
    assert page.dialogs and page.title == "pwned", found
    assert page.js["img_src_x"] and page.js["event_handler_attrs"] and page.js["hostile_scripts"]
    assert page.js["sentinel"] is not None


def test_html_table_and_contexts_render_hostile_strings_as_text(chrome, tmp_path):
    tokens = [*HOSTILE, " plain"]
    body = (html_table(hostile_frame(), status_col="status")
            + render_context_html(tokens, [0.1 * i for i in range(len(tokens))])
            + f"<h4>{html.escape(HOSTILE[1])}: feature 3</h4>")
    page = chrome.open(write_page(tmp_path, body), js=XSS_PROBES)
    assert xss_findings(page) == []
    assert page_problems(page) == []


def _notebook(path: Path) -> None:
    import nbformat

    params = nbformat.v4.new_code_cell("hostile = []")
    params.metadata["tags"] = ["parameters"]
    code = """\
import html
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import HTML, Image, Markdown, display
from mechrepro.report import html_table
from mechrepro.sae.metrics import render_context_html

df = pd.DataFrame({"prompt": hostile, "token": hostile[::-1]})
display(HTML(html_table(df)))
display(HTML(render_context_html(hostile, [float(i) for i in range(len(hostile))])))
display(Markdown("Strings: " + ", ".join(html.escape(s) for s in hostile)))
print("\\n".join(hostile))
fig, ax = plt.subplots(figsize=(3, 2))
ax.plot([0, 1, 2], [1, 0, 1])
ax.set_title(hostile[0])
fig.savefig("figure.png")  # as the replications show figures
display(Image(filename="figure.png"))
df"""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# A report with hostile model strings"),
                                         params, nbformat.v4.new_code_cell(code)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_report_render_shows_hostile_strings_as_text(chrome, tmp_path):
    """The real pipeline path: papermill executes a notebook with the strings as a parameter, nbconvert renders
    it with the offline template, Chromium opens it."""
    from mechrepro.report import render

    _notebook(tmp_path / "nb.ipynb")
    t0 = time.monotonic()
    render(tmp_path / "nb.ipynb", tmp_path / "report.html", {"hostile": HOSTILE}, OFFLINE_TEMPLATE,
           tmp_path / "executed.ipynb", cwd=tmp_path)
    render_s = time.monotonic() - t0
    page = chrome.open(tmp_path / "report.html", js=XSS_PROBES | {"scripts": "document.scripts.length"})
    scripts = page.js.pop("scripts")
    assert xss_findings(page) == []
    assert scripts == 0  # the offline template runs no scripts at all
    assert page_problems(page, min_images=1) == []
    assert render_s < 120, f"papermill + nbconvert took {render_s:.0f} s"


@pytest.mark.parametrize("escape_with", ["html.escape", "mechrepro.report.escape"])
def test_markdown_of_escaped_strings_is_inert(chrome, tmp_path, escape_with):
    """The notebooks interpolate strings into Markdown outputs (``Markdown(f"...{esc(s)}")``), which nbconvert
    renders with this filter. ``html.escape`` is not enough there (the control: ![](url) becomes an <img> that
    loads url); ``mechrepro.report.escape``, the notebooks' ``esc``, is."""
    from nbconvert.filters.markdown import markdown2html_mistune

    from mechrepro.report import escape

    s = "![t](https://example.com/t.png) [click](javascript:document.title='pwned') *a_b* `c`"
    esc = html.escape if escape_with == "html.escape" else escape
    page = chrome.open(write_page(tmp_path, markdown2html_mistune(esc(s))), js=XSS_PROBES)
    inert = page.external == [] and not page.js["javascript_links"] and s in page.text
    assert inert == (escape_with != "html.escape")
