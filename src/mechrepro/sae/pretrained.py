"""SAELens's published pretrained SAEs, checked on the model they were trained for (the paper scale).

``gpt2-small-res-jb`` (Bloom 2024: residual-stream SAEs for every layer of GPT-2 small) is listed in SAELens's
``pretrained_saes.yaml`` with the L0 each SAE had; that file ships with SAELens, so the published numbers are known
offline. Loading the weights needs the hub (``SAE.from_pretrained``) or a local cache of it; without either the
error says what is missing. The offline smoke run loads them with the same call from a fabricated cache
(:mod:`mechrepro.fabricate`: the release's files at a shrunk width, random weights): the whole path runs, the
numbers say nothing (the claim is "not comparable"). Only a random-init model with no cache (``gpt2-random``, in
tests) gets seeded random SAEs of the published shape instead.
"""

from __future__ import annotations

import torch
from jaxtyping import Int
from torch import Tensor
from transformer_lens import HookedTransformer


def published_l0(release: str) -> dict[str, float]:
    """SAE id -> the L0 SAELens publishes for ``release``."""
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    directory = get_pretrained_saes_directory()
    if release not in directory:
        raise ValueError(f"SAELens lists no pretrained release {release!r} (e.g. gpt2-small-res-jb)")
    return dict(directory[release].expected_l0)


def load_pretrained_sae(release: str, sae_id: str, random_init: bool, d_sae: int, d_in: int, seed: int = 0,
                        device: str = "cpu"):
    from sae_lens import SAE, StandardSAE, StandardSAEConfig

    if random_init:
        torch.manual_seed(seed)
        print(f"{release}/{sae_id}: seeded random StandardSAE (d_in {d_in}, d_sae {d_sae}), no cache read")
        return StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=d_sae)).to(device)
    try:
        sae = SAE.from_pretrained(release, sae_id, device=device)
        from mechrepro import hub

        repo = hub.sae_release_repo(release)
        print(f"{release}/{sae_id}: loaded by SAE.from_pretrained from {hub.snapshot(repo) or 'the hub'}"
              f"{' -- a fabricated cache: random weights' if hub.is_fabricated(repo) else ''}")
        return sae
    except (OSError, ConnectionError, ValueError) as err:
        raise RuntimeError(
            f"cannot load SAELens's pretrained SAE {release}/{sae_id} ({type(err).__name__}: {err}). It downloads "
            f"from the Hugging Face hub: run once where there is network (SAE.from_pretrained({release!r}, "
            f"{sae_id!r})) and point HF_HOME at that cache with HF_HUB_OFFLINE=1, or use the smoke run") from None


@torch.inference_mode()
def evaluate_pretrained(model: HookedTransformer, release: str, layers: list[int], tokens: Int[Tensor, "doc pos"],
                        random_init: bool, d_sae: int = 24576, n_cards: int = 10) -> dict:
    """Per layer: our L0 of the release's residual-stream SAE on ``tokens`` (every position but BOS) against the
    published one; and their mean relative error. Also each SAE's feature dashboards (:mod:`.dashboard`: density,
    contexts, logit effects ``W_dec W_U``; no latents in this text) for its ``n_cards`` most frequent features and 5
    drawn at random."""
    from mechrepro.sae import dashboard as D

    published = published_l0(release)
    rows, cards = [], []
    body = tokens[:, 1:]

    def vocab(ids):
        return [model.tokenizer.decode([int(i)]) for i in ids]
    for layer in layers:
        sae_id = f"blocks.{layer}.hook_resid_pre"
        if sae_id not in published:
            raise ValueError(f"{release} has no SAE {sae_id!r} (it has {sorted(published)[:3]}...)")
        sae = load_pretrained_sae(release, sae_id, random_init, d_sae, model.cfg.d_model, seed=layer,
                                  device=str(model.cfg.device))
        _, cache = model.run_with_cache(tokens.to(model.cfg.device), names_filter=sae_id)
        acts = cache[sae_id][:, 1:].flatten(0, 1).float()  # [token d_model]
        feats = sae.encode(acts).float().cpu()  # [token d_sae]
        ours = float((feats > 0).float().sum(-1).mean())
        rows.append({"layer": layer, "sae_id": sae_id, "l0": ours, "published_l0": published[sae_id],
                     "relative_error": abs(ours - published[sae_id]) / published[sae_id]})
        freq = (feats > 0).float().mean(0)
        live = {int(f): float(freq[f]) for f in (freq > 0).nonzero().flatten()}
        chosen = D.choose(live, [], n_best=n_cards, n_random=5, seed=layer)
        dirs = sae.W_dec[chosen].float() @ model.W_U.float()  # [chosen vocab]: a residual direction's logits
        cards += [D.feature_card(f, feats[:, f], sae.W_dec[f].detach().cpu(), dirs[i].cpu(), body.cpu(), vocab,
                                 f"L{layer}") for i, f in enumerate(chosen)]
    return {"rows": rows, "cards": cards,
            "summary": {"pretrained.l0_relative_error": sum(r["relative_error"] for r in rows) / len(rows),
                        **{f"pretrained.l0.layer{r['layer']}": r["l0"] for r in rows}}}
