"""Hook names, built in one place (TransformerLens conventions)."""

from __future__ import annotations

from transformer_lens.utils import get_act_name


def pattern(layer: int) -> str:
    """Attention pattern [batch head query key]."""
    return get_act_name("pattern", layer)


def z(layer: int) -> str:
    """Per-head attention output before W_O [batch pos head d_head]."""
    return get_act_name("z", layer)


def check_head(model, layer: int, head: int) -> None:
    """Raise a clear error when (layer, head) is outside the model."""
    n_l, n_h = model.cfg.n_layers, model.cfg.n_heads
    if not (0 <= layer < n_l and 0 <= head < n_h):
        raise ValueError(f"head {layer}.{head} is out of range: the model has {n_l} layers of {n_h} heads")
