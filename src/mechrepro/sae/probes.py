"""Linear probes for the corpus's latents, with controls, beside the best SAE feature (the seed labs' probing, with
Hewitt & Liang 2019's control task; :mod:`mechrepro.techniques.probing`).

For each latent the corpus records and each site -- the residual stream after every layer of each probed model
(``hook_resid_pre`` of layer 0 is the embedding), and the MLP neurons the SAEs read -- a logistic-regression probe
fitted on one half of the held-out documents and scored on the other, by balanced accuracy, with its shuffled-label
control and its control-task selectivity. Beside them, the largest dictionary's best single feature read as a
detector (fires or not; chosen on the first half, scored on the second): how far one feature gets where a probe
reads a whole layer.
"""

from __future__ import annotations

from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from mechrepro.sae.interpretability import Halves
from mechrepro.sae.train import activations_at
from mechrepro.techniques.probing import balanced_accuracy, probe_with_controls


def sites(model: HookedTransformer, neurons: str | None = None) -> list[tuple[str, int, str]]:
    """(site name, layer, hook name): the embedding, the residual stream after each layer, and ``neurons``."""
    out = [("resid", 0, "blocks.0.hook_resid_pre")]
    out += [("resid", layer + 1, f"blocks.{layer}.hook_resid_post") for layer in range(model.cfg.n_layers)]
    if neurons:
        out.append(("neurons", int(neurons.split(".")[1]), neurons))
    return out


def latent_probes(models: dict[str, tuple[HookedTransformer, str | None]], tokens: Int[Tensor, "doc pos"],
                  labels: dict[str, Tensor], feats: Float[Tensor, "token d_sae"] | None, dictionary: str,
                  seed: int = 0) -> list[dict]:
    """One row per model, site and latent (and per latent for the best SAE feature): balanced accuracy, the best
    shuffled-label control, the control task, selectivity and whether the probe is within noise of its shuffled
    control. ``models``: name -> (model, the neurons' hook or None)."""
    halves = Halves.by_document(tokens.shape[0], tokens.shape[1] - 1, seed=seed)
    train, test = halves.select, halves.measure
    token_ids = tokens[:, 1:].flatten()
    usable = {n: y for n, y in labels.items() if y[train].any() and (~y[train]).any() and y[test].any()
              and (~y[test]).any()}
    rows = []
    for name, (model, neurons) in models.items():
        where = sites(model, neurons)
        acts = activations_at(model, tokens, [h for _, _, h in where])
        for site, layer, hook in where:
            for latent, y in usable.items():
                r = probe_with_controls(acts[hook], y, token_ids, train, test, seed=seed)
                rows.append({"model": name, "site": site, "layer": layer, "feature": None, "latent": latent,
                             "accuracy": r.accuracy,
                             "shuffled_max": max(r.shuffled), "control": r.control, "selectivity": r.selectivity,
                             "within_noise": r.within_noise})
    if feats is not None:
        fires = feats > 0  # [token d_sae]
        for latent, y in usable.items():
            yt = y[train]
            tpr = (fires[train] & yt[:, None]).sum(0) / yt.sum()
            tnr = (~fires[train] & ~yt[:, None]).sum(0) / (~yt).sum()
            f = int((0.5 * (tpr + tnr)).argmax())
            rows.append({"model": dictionary, "site": "best SAE feature", "layer": None, "feature": f, "latent": latent,
                         "accuracy": balanced_accuracy(fires[test, f], y[test]), "shuffled_max": None,
                         "control": None, "selectivity": None, "within_noise": None})
    return rows


__all__ = ["latent_probes", "sites"]
