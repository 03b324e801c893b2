"""Per-head attention scores on repeated-token probes.

Olsson et al. 2022 (§"Per-token loss analysis", and the "Induction heads" definition) and Elhage
et al. 2021 (§"Induction heads"): on a sequence ``[BOS, r_1..r_L, r_1..r_L]`` of random tokens,

* an **induction head** at a token of the second half attends to the token *after* that token's
  earlier occurrence: query position ``i`` → key position ``i - L + 1``;
* a **previous-token head** attends to position ``i - 1``.

The score of a head is its mean attention weight on that key over the batch and the query
positions: the repeated half for the induction score, every position from 2 on for the
previous-token score (1.0 = always exactly there; 1/i for uniform attention).
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from mechrepro.techniques import hooks


def check_probes(tokens: Tensor) -> int:
    """Return the half length L of ``[BOS, r, r]`` probes; raise if the shape is not 1 + 2L."""
    if tokens.ndim != 2 or tokens.shape[1] < 3 or (tokens.shape[1] - 1) % 2:
        raise ValueError(f"repeated-token probes must be [batch, 1 + 2L]; got shape {tuple(tokens.shape)}")
    return (tokens.shape[1] - 1) // 2


@torch.inference_mode()
def attention_patterns(model: HookedTransformer, tokens: Int[Tensor, "batch pos"]
                       ) -> Float[Tensor, "layer batch head query key"]:
    names = [hooks.pattern(layer) for layer in range(model.cfg.n_layers)]
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names, return_type=None)
    return torch.stack([cache[n] for n in names])


def offset_score(patterns: Float[Tensor, "layer batch head query key"], offset: int, query_from: int
                 ) -> Float[Tensor, "layer head"]:
    """Mean attention from each query ``i >= query_from`` to key ``i - offset``."""
    q = torch.arange(query_from, patterns.shape[-2], device=patterns.device)
    weights = patterns[..., q, q - offset]  # [layer batch head n_q]
    return weights.mean(dim=(1, 3))


def induction_and_prev_scores(model: HookedTransformer, tokens: Int[Tensor, "batch pos"]
                              ) -> tuple[Float[Tensor, "layer head"], Float[Tensor, "layer head"]]:
    """(induction score, previous-token score) per head, on repeated-token probes."""
    half = check_probes(tokens)
    pats = attention_patterns(model, tokens)
    induction = offset_score(pats, offset=half - 1, query_from=half + 1)
    # Previous-token attention over the whole probe (from position 2: position 1's previous token is BOS).
    # A previous-token head serves the *keys* of an induction head, so what matters is its behaviour on
    # the first occurrence too.
    prev = offset_score(pats, offset=1, query_from=2)
    return induction, prev
