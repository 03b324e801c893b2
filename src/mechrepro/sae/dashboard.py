"""Feature dashboards, static and offline: what Bricken et al. 2023 (*Towards Monosemanticity*, the feature browser)
show of a feature, as plain HTML, CSS and inline SVG (no script, nothing loaded; the published dashboard packages
pin TransformerLens < 3 and load d3 / plotly from CDNs).

Per feature: its density and largest activation; its top-activating contexts, tokens shaded by activation; contexts
from quantiles of its positive activations (what it does *usually*, not only at its peak); the histogram of its
positive activations; its logit effects, the tokens its decoder direction pushes up and down through the MLP's output
weights and the unembedding (``W_dec W_out W_U``, the final LayerNorm left out as in the paper); the neurons it
aligns with (largest decoder weights); and, where the corpus records latents, its most specific latent and its
automated-interpretability explanation and score (:mod:`mechrepro.sae.interpretability`). The index lists every live
feature, sorted by each column in turn, each linked to its dashboard where it has one. Every token string is
HTML-escaped.
"""

from __future__ import annotations

import html
import math
import random

import torch
from jaxtyping import Float, Int
from torch import Tensor

from mechrepro.sae import metrics as M

QUANTILES = (0.25, 0.5, 0.75)


def anchor(dictionary: str, feature: int) -> str:
    return f"feature-{dictionary}-{feature}"


def choose(scores: dict[int, float], named: list[int], n_best: int = 20, n_random: int = 5, seed: int = 0) -> list[int]:
    """The features that get a dashboard: the ``n_best`` with the highest score (automated interpretability), every
    feature a claim names, and ``n_random`` others drawn with ``seed``."""
    best = sorted(scores, key=lambda f: (-scores[f], f))[:n_best]
    rest = sorted(set(scores) - set(best) - set(named))
    drawn = random.Random(seed).sample(rest, min(n_random, len(rest)))
    return list(dict.fromkeys([*best, *named, *drawn]))


def check_ids(ids: list[int], d_sae: int, dictionary: str) -> None:
    """Refuse a feature id outside the dictionary, by name."""
    bad = [f for f in ids if not 0 <= int(f) < d_sae]
    if bad:
        raise ValueError(f"feature {bad[0]} is outside dictionary {dictionary} (features 0..{d_sae - 1})")


def _context(feature_acts: Tensor, body: Int[Tensor, "doc pos"], i: int, window: int, vocab) -> dict:
    n_pos = body.shape[1]
    doc, pos = divmod(i, n_pos)
    lo = max(0, pos - window)
    acts = feature_acts.view(body.shape)[doc, lo:pos + 1]
    return {"tokens": vocab(body[doc, lo:pos + 1].tolist()), "acts": acts.tolist(), "target": pos - lo,
            "act": float(feature_acts[i])}


def feature_card(feature: int, feature_acts: Float[Tensor, " token"], decoder: Float[Tensor, " d_mlp"],
                 logit_dir: Float[Tensor, " d_vocab"], body: Int[Tensor, "doc pos"], vocab, dictionary: str,
                 k: int = 5, window: int = 10, n_bins: int = 30, n_logits: int = 8, n_neurons: int = 5) -> dict:
    """Everything one dashboard shows (module docstring), as plain JSON-able values. ``feature_acts`` [token]: the
    feature on every held-out token (documents ``body`` [doc pos] flattened); ``decoder``: its decoder row;
    ``logit_dir``: ``W_dec[f] W_out W_U``."""
    a = feature_acts.float()
    if a.numel() != body.numel():
        raise ValueError(f"feature {feature}: {a.numel()} activations for {body.numel()} tokens")
    if not torch.isfinite(a).all():
        raise ValueError(f"feature {feature}: activations contain NaN or inf")
    pos = a[a > 0]
    card = {"dictionary": dictionary, "feature": int(feature), "anchor": anchor(dictionary, feature),
            "density": float((a > 0).float().mean()), "max_act": float(a.max()) if len(a) else 0.0,
            "top": [], "quantiles": [], "histogram": None,
            "logits_up": [], "logits_down": [], "neurons": []}
    if len(pos):
        top = M.top_activating_contexts(a, body, k=k, window=window)
        card["top"] = [{"tokens": vocab(c["token_ids"]), "acts": c["acts"], "target": c["target"], "act": c["act"]}
                       for c in top]
        order = (a > 0).nonzero().flatten()[pos.argsort(stable=True)]  # firing tokens, weakest first
        for q in QUANTILES:
            i = int(order[min(int(q * len(order)), len(order) - 1)])
            card["quantiles"].append({"quantile": q, **_context(a, body, i, window, vocab)})
        counts, edges = torch.histogram(pos.double(), bins=n_bins)
        card["histogram"] = {"counts": counts.long().tolist(), "edges": edges.tolist()}
    n_logits = min(n_logits, len(logit_dir))
    up, down = logit_dir.topk(n_logits), (-logit_dir).topk(n_logits)
    card["logits_up"] = [{"token": t, "value": float(v)} for t, v in zip(vocab(up.indices.tolist()), up.values, strict=True)]
    card["logits_down"] = [{"token": t, "value": -float(v)} for t, v in
                           zip(vocab(down.indices.tolist()), down.values, strict=True)]
    w = decoder.float() / decoder.float().norm().clamp(min=1e-12)
    big = w.abs().topk(min(n_neurons, len(w)))
    card["neurons"] = [{"neuron": int(i), "weight": float(w[i])} for i in big.indices.tolist()]
    return card


# ---------------------------------------------------------------------------------------------- HTML

STYLE = """<style type="text/css">
.fd-card { border: 1px solid #bbb; border-radius: 4px; padding: 8px 12px; margin: 14px 0; }
.fd-card h4 { margin: 2px 0 6px 0; }
.fd-cols { display: flex; flex-wrap: wrap; gap: 18px; }
.fd-cols > div { min-width: 260px; flex: 1; }
.fd-small { font-size: 0.85em; color: #444; }
table.fd-index td, table.fd-index th { padding: 1px 6px; border-bottom: 1px solid #ddd; font-size: 0.85em; }
</style>"""


def _esc(x) -> str:
    return html.escape(str(x), quote=True)


def histogram_svg(hist: dict | None, width: int = 260, height: int = 70) -> str:
    """Inline SVG bars of the positive activations' histogram (no script)."""
    if not hist or not hist["counts"]:
        return '<p class="fd-small">never fires on the held-out tokens</p>'
    counts, edges = hist["counts"], hist["edges"]
    top = max(counts) or 1
    bw = width / len(counts)
    bars = "".join(f'<rect x="{i * bw:.1f}" y="{height - 12 - (height - 14) * c / top:.1f}" width="{max(bw - 1, 1):.1f}" '
                   f'height="{(height - 14) * c / top:.1f}" fill="#e07800"><title>{edges[i]:.3g}-{edges[i + 1]:.3g}: {c}'
                   f'</title></rect>' for i, c in enumerate(counts))
    axis = (f'<text x="0" y="{height - 1}" font-size="9">{edges[0]:.2g}</text>'
            f'<text x="{width}" y="{height - 1}" font-size="9" text-anchor="end">{edges[-1]:.3g}</text>')
    return f'<svg width="{width}" height="{height}" role="img" aria-label="activation histogram">{bars}{axis}</svg>'


def _rows(items: list[dict], key: str, fmt: str = "{:+.3f}") -> str:
    return "".join(f"<tr><td><code>{_esc(repr(x[key]) if key == 'token' else x[key])}</code></td>"
                   f"<td>{fmt.format(x['value'] if 'value' in x else x['weight'])}</td></tr>" for x in items)


def card_html(card: dict, about: dict | None = None) -> str:
    """One feature's dashboard. ``about``: its most specific latent, precision, explanation and score (or None)."""
    about = about or {}
    facts = [f"density {100 * card['density']:.3f}%", f"max activation {card['max_act']:.3g}"]
    if about.get("latent"):
        facts.append(f"most specific latent <b>{_esc(about['latent'])}</b> (precision {about['precision']:.2f})")
    if about.get("explanation"):
        facts.append(f"explanation <b>{_esc(about['explanation'])}</b>, held-out score {about['score']:.2f}")
    ctx = "".join(M.render_context_html(c["tokens"], c["acts"], c["target"], max_act=card["max_act"] or None)
                  for c in card["top"]) or "<p>never fires</p>"
    quant = "".join(f'<div class="fd-small">{100 * c["quantile"]:.0f}th percentile of its activations ({c["act"]:.3g}):'
                    f'</div>{M.render_context_html(c["tokens"], c["acts"], c["target"], max_act=card["max_act"] or None)}'
                    for c in card["quantiles"])
    return (f'<div class="fd-card" id="{_esc(card["anchor"])}"><h4>Feature {card["feature"]} of {_esc(card["dictionary"])}'
            f'</h4><p class="fd-small">{" · ".join(facts)} · <a href="#feature-index">back to the index</a></p>'
            f'<div class="fd-cols"><div><b>Top activations</b>{ctx}</div><div><b>Across its range</b>{quant or "—"}'
            f'</div></div><div class="fd-cols"><div><b>Positive activations</b><br>{histogram_svg(card["histogram"])}</div>'
            f'<div><b>Logits it raises</b><table>{_rows(card["logits_up"], "token")}</table></div>'
            f'<div><b>Logits it lowers</b><table>{_rows(card["logits_down"], "token")}</table></div>'
            f'<div><b>Neurons it aligns with</b> <span class="fd-small">(decoder weight, unit norm)</span><table>'
            f'{_rows(card["neurons"], "neuron")}</table></div></div></div>')


INDEX_COLUMNS = (("score", "automated-interpretability score"), ("precision", "precision of its most specific latent"),
                 ("density", "density"), ("max_act", "largest activation"))


def index_html(rows: list[dict], linked: set[str]) -> str:
    """The feature index: every live feature with its density, largest activation, most specific latent and
    precision, explanation and score; one table per sort order (the report runs no script to sort), each feature
    linked to its dashboard where it has one. ``rows``: dicts with dictionary, feature, density, max_act, latent,
    precision, explanation, score (None where not defined, shown as n/a)."""
    def cell(v, fmt="{:.3g}"):
        return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else _esc(fmt.format(v) if fmt else v)

    def table(order: list[dict]) -> str:
        body = []
        for r in order:
            a = anchor(r["dictionary"], r["feature"])
            name = f'<a href="#{_esc(a)}">{r["feature"]}</a>' if a in linked else str(r["feature"])
            body.append(f"<tr><td>{name}</td><td>{cell(r['density'], '{:.2e}')}</td><td>{cell(r['max_act'])}</td>"
                        f"<td>{cell(r['latent'], None)}</td><td>{cell(r['precision'], '{:.2f}')}</td>"
                        f"<td>{cell(r['explanation'], None)}</td><td>{cell(r['score'], '{:.2f}')}</td></tr>")
        head = ("<tr><th>feature</th><th>density</th><th>max act.</th><th>most specific latent</th><th>precision</th>"
                "<th>explanation</th><th>score</th></tr>")
        return f'<table class="fd-index"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'

    def key(col):
        return lambda r: (r[col] is None or (isinstance(r[col], float) and math.isnan(r[col])), -(r[col] or 0.0), r["feature"])
    parts = [f'<div id="feature-index"><p class="fd-small">{len(rows)} live features; linked ones have a dashboard '
             "below.</p>"]
    for i, (col, label) in enumerate(INDEX_COLUMNS):
        parts.append(f"<details{' open' if i == 0 else ''}><summary>sorted by {_esc(label)}</summary>"
                     f"{table(sorted(rows, key=key(col)))}</details>")
    return "".join(parts) + "</div>"


__all__ = ["QUANTILES", "STYLE", "anchor", "card_html", "check_ids", "choose", "feature_card", "histogram_svg", "index_html"]
