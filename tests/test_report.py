import pandas as pd

from mechrepro.report import build_index, claims_frame, html_table, write_manifest


def test_html_table_escapes_model_strings():
    df = pd.DataFrame({"token": ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>'], "status": ["pass", "fail"]})
    page = html_table(df, status_col="status")
    assert "<script>" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'class="st-pass"' in page and 'class="st-fail"' in page


def test_index_lists_versions_with_claim_counts(tmp_path):
    claims = {"claims": [], "summary": {"pass": 3, "fail": 1, "not run": 2, "not comparable": 0}}
    for version in ("abc-1", "def-dirty-2"):
        write_manifest(tmp_path / version / "manifest.json", version, "toy", {"induction_heads": claims},
                       {"commit": version.split("-")[0], "dirty": "dirty" in version, "config_hash": "x"})
    build_index(tmp_path, tmp_path / "index.html")
    page = (tmp_path / "index.html").read_text()
    assert 'href="abc-1/induction_heads.html"' in page and 'href="def-dirty-2/induction_heads.html"' in page
    assert "3 pass, 1 fail, 2 not run, 0 not comparable" in page
    assert "<script" not in page


def test_claims_frame_shows_threshold_source():
    rows = [{"claim": "c", "source": "s", "paper_value": "p", "comparator": ">=", "value": 0.5, "tolerance": 0.0,
             "threshold_source": "our bar", "ours": 0.7, "status": "pass", "why": "0.7 >= 0.5"}]
    df = claims_frame({"claims": rows})
    assert df.loc[0, "threshold"] == ">= 0.5 (our bar)"


def test_control_characters_from_a_tokenizer_never_reach_the_html():
    """A token can decode to NUL or ESC (the smoke run's fabricated tokenizer did): every path that puts model
    strings into a report shows them as control pictures, never as raw control bytes."""
    import re

    from mechrepro.report import escape
    from mechrepro.sae.metrics import render_context_html

    out = (escape("a\x00b\x1b[0m") + html_table(pd.DataFrame({"t": ["\x00\x7f"]}))
           + render_context_html(["\x00", "x\x08"], [1.0, 0.5]))
    assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", out)
    assert "␀" in out and "␛" in out and "␡" in out and "␈" in out
