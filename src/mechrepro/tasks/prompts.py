"""Prompt batches shared by the IOI and Greater-Than tasks: tokenize, group by length, read last logits.

Prompts of one template have one length when every filled word is one token, but templates differ,
so a prompt set is evaluated in groups of equal length (no padding, so no attention-mask subtleties).
"""

from __future__ import annotations

from collections import defaultdict

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens import HookedTransformer


def encode_prompt(tokenizer, text: str) -> list[int]:
    """BOS + the tokens of ``text`` (as TransformerLens prepends BOS); raises on an unknown word."""
    ids = [tokenizer.bos_token_id, *tokenizer.encode(text, add_special_tokens=False)]
    if tokenizer.unk_token_id is not None and tokenizer.unk_token_id != tokenizer.bos_token_id \
            and tokenizer.unk_token_id in ids:
        unknown = [w for w in text.split() if tokenizer.unk_token_id in tokenizer.encode(" " + w, add_special_tokens=False)]
        raise ValueError(f"prompt has words this tokenizer does not know: {unknown or '?'} in {text!r}")
    return ids


@torch.inference_mode()
def last_token_logits(model: HookedTransformer, prompts: list[list[int]], batch_size: int = 256
                      ) -> Float[Tensor, "prompt vocab"]:
    """Logits at the final position of every prompt, in prompt order (float32)."""
    by_len: dict[int, list[int]] = defaultdict(list)
    for i, p in enumerate(prompts):
        by_len[len(p)].append(i)
    out = torch.empty(len(prompts), model.cfg.d_vocab)
    device = model.cfg.device
    for n, idx in sorted(by_len.items()):
        if n > model.cfg.n_ctx:
            raise ValueError(f"prompt of {n} tokens is longer than the model's context ({model.cfg.n_ctx})")
        for s in range(0, len(idx), batch_size):
            chunk = idx[s:s + batch_size]
            toks = torch.tensor([prompts[i] for i in chunk], device=device)
            out[chunk] = model(toks)[:, -1].float().cpu()
    return out
