"""Per-token loss and the in-context-learning score.

Olsson et al. 2022, §"Phase change" / "In-context learning score": the loss at a late token of
the context minus the loss at an early token (they use the 500th and 50th tokens of 512-token
contexts). Our toy contexts are shorter, so the indices are config values; the report states them.
A more negative score means the model uses the earlier context more.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer


def per_token_loss_from_logits(logits: Float[Tensor, "batch pos vocab"], tokens: Int[Tensor, "batch pos"]
                               ) -> Float[Tensor, "batch pos_minus_1"]:
    """Cross-entropy of predicting token i+1 at position i (float32 for stable log-softmax)."""
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
    return -logp.gather(-1, tokens[:, 1:, None])[..., 0]


@torch.inference_mode()
def per_token_loss(model: HookedTransformer, tokens: Int[Tensor, "batch pos"], batch_size: int = 64
                   ) -> Float[Tensor, "batch pos_minus_1"]:
    out = [per_token_loss_from_logits(model(tokens[i:i + batch_size]), tokens[i:i + batch_size])
           for i in range(0, len(tokens), batch_size)]
    return torch.cat(out)


def icl_score(loss: Float[Tensor, "batch pos_minus_1"], early: int, late: int) -> dict[str, float]:
    """ICL score from a per-token loss matrix: mean loss at token ``late`` minus at token ``early``.

    Token indices count context tokens (index k is the loss of predicting token k, given tokens < k),
    so they are loss columns k - 1.
    """
    n = loss.shape[1] + 1
    if not (1 <= early < late < n):
        raise ValueError(f"ICL token indices need 1 <= early ({early}) < late ({late}) < context length ({n})")
    lo_e, lo_l = loss[:, early - 1].mean().item(), loss[:, late - 1].mean().item()
    return {"icl_score": lo_l - lo_e, "loss_early": lo_e, "loss_late": lo_l}
