"""Induction heads: Olsson et al. 2022, *In-context Learning and Induction Heads*, and Elhage et al.
2021, *A Mathematical Framework for Transformer Circuits*.

What is reproduced (see replications/induction_heads/README.md):

* repeated-token probes ``[BOS, r, r]`` and the per-token loss on both halves (Olsson §"Per-token
  losses"; Elhage §"Induction heads");
* per-head induction and previous-token scores, at every kept training checkpoint;
* the phase change: the in-context-learning score and the max induction score against training
  tokens, for attention-only 1-, 2- and 3-layer models (Olsson §"Argument 1", Figure "phase change");
* ablation of the top induction heads against a control of other heads (Olsson §"Argument 2/3");
* K-composition between earlier and later heads, with a random-matrix baseline (Elhage §"Composition").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from jaxtyping import Int
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from mechrepro.techniques import ablation, composition
from mechrepro.techniques.attention_scores import attention_patterns, check_probes, induction_and_prev_scores
from mechrepro.techniques.losses import icl_score, per_token_loss

# GPT-2 small heads named in the literature (layer, head). Olsson et al. do not list GPT-2 heads;
# these are the induction heads found in GPT-2 small by TransformerLens's main demo (Nanda 2022,
# "Exploratory analysis demo") and, for 5.5 / 6.9 and the previous-token head 4.11, Wang et al. 2022.
PAPER_INDUCTION_HEADS: tuple[tuple[int, int], ...] = ((5, 1), (5, 5), (6, 9), (7, 2), (7, 10))
PAPER_PREV_TOKEN_HEADS: tuple[tuple[int, int], ...] = ((4, 11),)


@dataclass(frozen=True)
class InductionConfig:
    """The ``induction_heads`` section of a scale config."""

    phase_models: tuple[str, ...]
    main_model: str
    probe_lengths: tuple[int, ...]
    n_probes: int
    n_reference: int
    icl_early: int
    icl_late: int
    n_icl_docs: int
    top_k: int
    n_control_draws: int
    head_threshold: float
    composition_samples: int
    seed: int
    paper_heads: bool = False  # compare against the GPT-2 small heads of the literature

    def __post_init__(self):
        if not self.probe_lengths or min(self.probe_lengths) < 2:
            raise ValueError("induction_heads.probe_lengths: need at least one length >= 2")
        for k in ("n_probes", "n_reference", "n_icl_docs", "top_k", "n_control_draws", "composition_samples"):
            if getattr(self, k) < 1:
                raise ValueError(f"induction_heads.{k} must be >= 1, got {getattr(self, k)}")
        if not 1 <= self.icl_early < self.icl_late:
            raise ValueError(f"induction_heads: need 1 <= icl_early < icl_late, got {self.icl_early}, {self.icl_late}")
        if not 0 < self.head_threshold < 1:
            raise ValueError("induction_heads.head_threshold must be in (0, 1)")

    @classmethod
    def from_config(cls, section: dict) -> InductionConfig:
        s = dict(section)
        s["phase_models"] = tuple(s.get("phase_models", ()))
        s["probe_lengths"] = tuple(s["probe_lengths"])
        return cls(**s)


# ---------------------------------------------------------------------------------------------
# Probes


def probe_token_pool(tokenizer) -> list[int]:
    """Ids of the tokens probes are drawn from: every space-led word or number (" Mary", " 17").

    The same rule for GPT-2 (about 30k such tokens) and the toy tokenizer (every token the corpus
    uses as a word); it leaves out special tokens, punctuation and word-internal pieces, so a probe
    decodes to a plausible sequence of words.
    """
    vocab = tokenizer.get_vocab()
    space = "\u0120"  # byte-level BPE's visible space ("Ġ")
    pool = sorted(i for t, i in vocab.items() if t.startswith(space) and t[1:].isalnum()
                  and i not in tokenizer.all_special_ids)
    if len(pool) < 10:
        raise ValueError(f"the tokenizer has only {len(pool)} space-led word tokens: too few for random probes")
    return pool


def make_probes(pool: list[int], bos_id: int, lengths: tuple[int, ...], n: int, seed: int
                ) -> dict[str, Int[Tensor, "batch pos"]]:
    """``[BOS, r_1..r_L, r_1..r_L]`` with r uniform over ``pool``, one batch per length."""
    g = torch.Generator().manual_seed(seed)
    pool_t = torch.tensor(pool, dtype=torch.long)
    out = {}
    for length in lengths:
        r = pool_t[torch.randint(len(pool_t), (n, length), generator=g)]  # [batch L]
        bos = torch.full((n, 1), bos_id, dtype=torch.long)
        out[f"L{length}"] = torch.cat([bos, r, r], dim=1)  # [batch 1+2L]
    return out


def probe_scores(model: HookedTransformer, probes: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Induction and previous-token scores [layer head], averaged over probe lengths."""
    ind, prev = zip(*(induction_and_prev_scores(model, t) for t in probes.values()), strict=True)
    return torch.stack(ind).mean(0), torch.stack(prev).mean(0)


def heads_frame(values: dict[str, Tensor]) -> pd.DataFrame:
    """Long table with one row per head: layer, head, and one column per [layer head] tensor."""
    n_l, n_h = next(iter(values.values())).shape
    rows = {"layer": np.repeat(np.arange(n_l), n_h), "head": np.tile(np.arange(n_h), n_l)}
    rows.update({k: v.flatten().cpu().numpy() for k, v in values.items()})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Phase change over training checkpoints


def checkpoint_sweep(load: Callable[[str], HookedTransformer], checkpoints: list[dict], probes: dict[str, Tensor],
                     icl_tokens: Tensor, cfg: InductionConfig, *, desc: str = "checkpoints"
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per checkpoint: head scores (long table) and ICL score + max induction score."""
    heads, summary = [], []
    for ck in tqdm(checkpoints, desc=desc):
        model = load(ck["path"])
        ind, prev = probe_scores(model, probes)
        icl = icl_score(per_token_loss(model, icl_tokens), cfg.icl_early, cfg.icl_late)
        h = heads_frame({"induction": ind, "prev_token": prev})
        h.insert(0, "tokens", ck["tokens"])
        h.insert(0, "step", ck["step"])
        heads.append(h)
        summary.append({"step": ck["step"], "tokens": ck["tokens"], **icl,
                        "max_induction": ind.max().item(), "max_prev_token": prev.max().item()})
    return pd.concat(heads, ignore_index=True), pd.DataFrame(summary)


def transition_index(values: np.ndarray, rising: bool) -> int:
    """First checkpoint from which ``values`` stay past the midpoint of their transition.

    Rising (induction score): midpoint between the first and the last value. Falling (ICL score):
    midpoint between the highest value and the last one, since the ICL score first rises while the
    model learns context-free statistics. Returns an index into ``values``.
    """
    v = np.asarray(values, dtype=float)
    if rising:
        mid = (v[0] + v[-1]) / 2
        ok = v >= mid
    else:
        mid = (v.max() + v[-1]) / 2
        ok = v <= mid
    # first index i such that ok[j] holds for every j >= i
    bad = np.nonzero(~ok)[0]
    return int(bad[-1] + 1) if len(bad) else 0


def phase_change_summary(summary: pd.DataFrame) -> dict[str, float]:
    i_ind = transition_index(summary["max_induction"].to_numpy(), rising=True)
    i_icl = transition_index(summary["icl_score"].to_numpy(), rising=False)
    i_ind, i_icl = min(i_ind, len(summary) - 1), min(i_icl, len(summary) - 1)
    return {
        "final_max_induction": float(summary["max_induction"].iloc[-1]),
        "final_icl_score": float(summary["icl_score"].iloc[-1]),
        "induction_transition_tokens": int(summary["tokens"].iloc[i_ind]),
        "icl_transition_tokens": int(summary["tokens"].iloc[i_icl]),
        "transition_gap_checkpoints": abs(i_ind - i_icl),
    }


# ---------------------------------------------------------------------------------------------
# Analyses of one (final) model


def per_position_loss(model: HookedTransformer, probes: dict[str, Tensor]) -> pd.DataFrame:
    """Mean loss at each position of the probes; ``half`` says first (1) or repeated (2) half."""
    rows = []
    for name, tokens in probes.items():
        half = check_probes(tokens)
        loss = per_token_loss(model, tokens).mean(0)  # [pos-1]: loss of predicting token k+1
        for k, v in enumerate(loss.tolist()):
            pos = k + 1  # the predicted token's position
            rows.append({"probe": name, "length": half, "position": pos, "half": 1 if pos <= half else 2, "loss": v})
    return pd.DataFrame(rows)


def circuit_heads(scores: pd.DataFrame, cfg: InductionConfig) -> dict[str, list[tuple[int, int]]]:
    """Top-k induction heads, the previous-token heads (score >= head_threshold) and all other heads."""
    ranked = [tuple(map(int, x)) for x in scores.sort_values("induction", ascending=False)[["layer", "head"]].to_numpy()]
    induction = ranked[: min(cfg.top_k, len(ranked) - 1)]
    prev = [tuple(map(int, x)) for x in scores[scores.prev_token >= cfg.head_threshold][["layer", "head"]].to_numpy()
            if tuple(map(int, x)) not in induction]
    others = [h for h in ranked if h not in induction and h not in prev]
    return {"induction": induction, "previous-token": prev, "control": others}


def ablation_study(model: HookedTransformer, probes: dict[str, Tensor], reference: dict[str, Tensor],
                   heads: dict[str, list[tuple[int, int]]], cfg: InductionConfig) -> pd.DataFrame:
    """Loss on both probe halves with head sets ablated: none, the top induction heads, the
    previous-token heads, and ``n_control_draws`` random sets of as many *other* heads.

    Controls leave out the previous-token heads: they are part of the induction circuit (its keys),
    so ablating one breaks induction from upstream, which is the circuit working, not a control.
    """
    k = len(heads["induction"])
    rng = np.random.default_rng(cfg.seed)
    sets = [("none", []), ("induction", heads["induction"])]
    if heads["previous-token"]:
        sets.append(("previous-token", heads["previous-token"]))
    others = heads["control"]
    for _ in range(cfg.n_control_draws if others else 0):
        idx = rng.choice(len(others), size=min(k, len(others)), replace=False)
        sets.append(("control", [others[i] for i in sorted(idx)]))
    rows = []
    for name, tokens in probes.items():
        half = check_probes(tokens)
        means = ablation.mean_head_outputs(model, reference[name])
        for method in ("zero", "mean"):
            losses = ablation.ablated_per_token_losses(model, tokens, [hs for _, hs in sets], method, means)
            for (kind, hs), loss in zip(sets, losses, strict=True):  # loss: [batch pos-1]
                rows.append({"probe": name, "method": method, "kind": kind,
                             "heads": " ".join(f"{layer}.{h}" for layer, h in hs),
                             "first_half_loss": loss[:, : half - 1].mean().item(),
                             "repeated_half_loss": loss[:, half:].mean().item()})
    return pd.DataFrame(rows)


def ablation_summary(table: pd.DataFrame) -> dict[str, float]:
    """Loss increase on the repeated half: induction heads vs the mean of the controls (ratio floored
    at a control increase of 1e-3 nats, so a control that changes nothing gives a large finite ratio)."""
    out = {}
    for method, t in table.groupby("method"):
        clean = t[t.kind == "none"].repeated_half_loss.mean()
        ind = t[t.kind == "induction"].repeated_half_loss.mean() - clean
        ctl = t[t.kind == "control"].repeated_half_loss.mean() - clean
        out[f"ablation_{method}_induction_increase"] = float(ind)
        out[f"ablation_{method}_control_increase"] = float(ctl)
        out[f"ablation_{method}_ratio"] = float(ind / max(ctl, 1e-3))
        if (t.kind == "previous-token").any():
            out[f"ablation_{method}_prev_token_increase"] = float(
                t[t.kind == "previous-token"].repeated_half_loss.mean() - clean)
    return out


def composition_study(model: HookedTransformer, scores: pd.DataFrame, cfg: InductionConfig
                      ) -> tuple[pd.DataFrame, dict[str, float]]:
    """K-composition for all (earlier, later) head pairs, against random matrices of the same shape."""
    k = composition.model_composition_scores(model, "K")  # [l1 h1 l2 h2]
    n_l, n_h = k.shape[:2]
    ind = scores.set_index(["layer", "head"])["induction"]
    prev = scores.set_index(["layer", "head"])["prev_token"]
    rows = [{"src_layer": l1, "src_head": h1, "dst_layer": l2, "dst_head": h2, "k_composition": k[l1, h1, l2, h2].item(),
             "src_prev_token": prev[(l1, h1)], "dst_induction": ind[(l2, h2)]}
            for l1 in range(n_l) for l2 in range(l1 + 1, n_l) for h1 in range(n_h) for h2 in range(n_h)]
    table = pd.DataFrame(rows)
    base = composition.random_baseline(model.cfg.d_model, model.cfg.d_head, "K", cfg.composition_samples, cfg.seed)
    out = {"kcomp_random_mean": base.mean().item(), "kcomp_random_p95": base.quantile(0.95).item()}
    if len(table):
        top = table.loc[table.k_composition.idxmax()]
        out.update({
            "kcomp_top_score": float(top.k_composition),
            "kcomp_top_pair": f"{int(top.src_layer)}.{int(top.src_head)}->{int(top.dst_layer)}.{int(top.dst_head)}",
            "kcomp_top_is_prev_to_induction": float(top.src_prev_token >= cfg.head_threshold
                                                    and top.dst_induction >= cfg.head_threshold),
            "kcomp_top_over_random_p95": float(top.k_composition / out["kcomp_random_p95"]),
        })
    return table, out


def top_head_patterns(model: HookedTransformer, probe: Tensor, heads: list[tuple[int, int]]) -> dict[str, Tensor]:
    """Attention patterns [query key] of ``heads`` on one probe sequence (for the figures)."""
    pats = attention_patterns(model, probe[:1])  # [layer 1 head q k]
    return {f"{layer}.{h}": pats[layer, 0, h].clone() for layer, h in heads}


def paper_head_match(scores: pd.DataFrame) -> dict[str, float]:
    """How the GPT-2 small heads named in the literature rank among ours."""
    ranked_ind = [tuple(x) for x in scores.sort_values("induction", ascending=False)[["layer", "head"]].to_numpy()]
    ranked_prev = [tuple(x) for x in scores.sort_values("prev_token", ascending=False)[["layer", "head"]].to_numpy()]
    n = len(PAPER_INDUCTION_HEADS)
    return {
        "paper_induction_heads_in_top": sum(h in ranked_ind[:n] for h in PAPER_INDUCTION_HEADS) / n,
        "paper_prev_token_head_rank": float(min(ranked_prev.index(h) for h in PAPER_PREV_TOKEN_HEADS) + 1),
    }
