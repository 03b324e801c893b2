"""The model registry: a name maps to a toy recipe, a pretrained TransformerLens model, or a
random-init stand-in of a pretrained model's shape.

Toy recipes (architecture + training recipe) are trained by the pipeline itself from the seeded
synthetic corpus. The attention-only 1/2/3-layer models follow Olsson et al. 2022 (§"Phase change",
small attention-only models with positional embeddings); they are much narrower so that they train
on two CPU cores. ``*-ci`` recipes are the same models shrunk to the CI budget.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # TransformerLens takes seconds to import: the workflow reads the registry on every command
    from transformer_lens import HookedTransformerConfig


@dataclass(frozen=True)
class TrainRecipe:
    """AdamW with linear warmup and cosine decay to ``min_lr_frac * lr``."""

    n_steps: int
    batch_size: int
    lr: float = 1e-3
    warmup_steps: int = 50
    min_lr_frac: float = 0.5
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    seed: int = 0
    n_checkpoints: int = 24  # log-spaced in tokens, kept for the phase-change analysis
    resume_every: int = 100  # steps between resume states (besides every kept checkpoint)
    log_every: int = 10

    def __post_init__(self):
        for k in ("n_steps", "batch_size", "n_checkpoints", "resume_every", "log_every"):
            if getattr(self, k) < 1:
                raise ValueError(f"train recipe: {k} must be >= 1")
        if not (0 < self.lr < 1) or not (0 <= self.min_lr_frac <= 1) or self.warmup_steps < 0:
            raise ValueError("train recipe: need 0 < lr < 1, 0 <= min_lr_frac <= 1, warmup_steps >= 0")


@dataclass(frozen=True)
class ToyRecipe:
    name: str
    n_layers: int
    d_model: int
    n_heads: int
    d_head: int
    n_ctx: int
    train: TrainRecipe
    attn_only: bool = True
    d_mlp: int | None = None
    act_fn: str | None = None
    normalization_type: str | None = "LN"
    # "shortformer": positions enter only the queries and keys, not the residual stream, as in the
    # attention-only models Nanda trained for TransformerLens (attn-only-1l/2l) after Olsson et al.
    positional_embedding_type: str = "shortformer"
    corpus: str = "induction"  # the named corpus of the scale config it trains on
    description: str = ""
    kind: str = field(default="toy", init=False)

    def tl_config(self, d_vocab: int) -> HookedTransformerConfig:
        from transformer_lens import HookedTransformerConfig

        return HookedTransformerConfig(
            n_layers=self.n_layers, d_model=self.d_model, n_heads=self.n_heads, d_head=self.d_head,
            n_ctx=self.n_ctx, d_vocab=d_vocab, attn_only=self.attn_only, d_mlp=self.d_mlp,
            act_fn=self.act_fn, normalization_type=self.normalization_type,
            positional_embedding_type=self.positional_embedding_type, seed=self.train.seed, init_weights=True,
            default_prepend_bos=False,
        )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PretrainedModel:
    """A TransformerLens pretrained model (needs the hub or a local Hugging Face cache once)."""

    name: str
    tl_name: str
    tokenizer: str = "gpt2"  # offline copy of its tokenizer, for datasets built without the model
    description: str = ""
    n_layers: int = 0
    # What TransformerLens downloads for it (checked against TransformerLens's own name table in the tests):
    # the weights' Hugging Face repo, and the tokenizer's when it lives elsewhere.
    hub_repos: tuple[str, ...] = ()
    kind: str = field(default="pretrained", init=False)


@dataclass(frozen=True)
class RandomInitModel:
    """Random weights in the shape of a pretrained model, with its real tokenizer, built without any cache (tests and
    benches that need the shape; the smoke run reads the papers' models from a fabricated cache instead).

    Its numbers are meaningless; the shapes, tokenization, speed and plumbing are real.
    """

    name: str
    stands_in_for: str
    tokenizer: str  # "gpt2": the GPT-2 BPE files shipped in the package (mechrepro/data/gpt2_tokenizer)
    cfg: dict
    seed: int = 0
    description: str = ""
    kind: str = field(default="random", init=False)

    @property
    def n_layers(self) -> int:
        return self.cfg["n_layers"]


GPT2_SMALL_SHAPE = dict(n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072, n_ctx=1024, d_vocab=50257,
                        act_fn="gelu_new", normalization_type="LN", positional_embedding_type="standard")


def _attn_only(name: str, n_layers: int, d_model: int, n_heads: int, n_ctx: int, train: TrainRecipe) -> ToyRecipe:
    # No LayerNorm and shortformer positions: with positions kept out of the residual stream, the only
    # way to find "the token after the previous occurrence" is the paper's circuit (a previous-token
    # head K-composing with an induction head), and the plateau before it forms fits a CPU budget.
    return ToyRecipe(name=name, n_layers=n_layers, d_model=d_model, n_heads=n_heads, d_head=d_model // n_heads,
                     n_ctx=n_ctx, train=train, normalization_type=None,
                     description=f"attention-only, {n_layers} layer(s), {n_heads} heads of {d_model // n_heads}, "
                                 f"d_model {d_model}, context {n_ctx}, shortformer positions, no LayerNorm")


# Induction heads form after a plateau whose length grows with the context length (roughly
# quadratically) and shrinks with the learning rate; a 32-token context and lr 1e-2 put the phase
# change at about 1,000-1,500 steps (1-1.5M tokens), measured on this corpus.
_TOY_TRAIN = TrainRecipe(n_steps=3000, batch_size=32, lr=1e-2, warmup_steps=40, seed=0, n_checkpoints=24)
# Three layers without LayerNorm need a smaller step: at lr 1e-2 the 3-layer model's induction heads had
# only partly formed by 3,000 steps (max score 0.34); at 6e-3 they form at ~1,200-1,500 steps.
_TOY_TRAIN_3L = dataclasses.replace(_TOY_TRAIN, lr=6e-3)
_CI_TRAIN = TrainRecipe(n_steps=2500, batch_size=32, lr=1e-2, warmup_steps=40, seed=0, n_checkpoints=20)



def _lm(name: str, n_layers: int, d_model: int, n_heads: int, d_mlp: int, act_fn: str, train: TrainRecipe,
        why: str) -> ToyRecipe:
    return ToyRecipe(name=name, n_layers=n_layers, d_model=d_model, n_heads=n_heads, d_head=d_model // n_heads,
                     n_ctx=64, train=train, attn_only=False, d_mlp=d_mlp, act_fn=act_fn, normalization_type="LN",
                     positional_embedding_type="standard", corpus="lm",
                     description=f"GPT-2-like: {n_layers} layer(s), {n_heads} heads of {d_model // n_heads}, d_model "
                                 f"{d_model}, {act_fn} MLP of {d_mlp}, LayerNorm, learned positions, context 64. {why}")


# The language models: AdamW lr 3e-3, cosine decay to 0.1x. On this corpus IOI is learned late and in a
# jump (held-out IOI accuracy ~0.5 until ~3,000 steps). With 5,000 steps the decay came too early: the
# jump was only partly made (0.85, and 0.66 on one held-out template); an 8,000-step schedule keeps the
# rate up and had it complete by 4,400 steps (0.99-1.0 on every held-out template).
_LM_TRAIN = TrainRecipe(n_steps=8000, batch_size=32, lr=3e-3, warmup_steps=100, min_lr_frac=0.1, seed=0,
                        n_checkpoints=12)
# One layer cannot do IOI; it is here for the SAEs, and its loss has flattened by 5,000 steps.
_ONE_LAYER_TRAIN = dataclasses.replace(_LM_TRAIN, n_steps=5000)
_LM_CI_TRAIN = dataclasses.replace(_LM_TRAIN, n_steps=1200, n_checkpoints=8)  # too short for IOI: reported only
_TOY_LM_WHY = ("Two layers: enough for the IOI algorithm (a layer that detects the duplicated name, a layer that "
               "moves the other one), and in our runs it generalised to the held-out IOI templates where a 3-layer "
               "model of the same width memorised the training wordings (held-out accuracy 0.997 vs 0.64 after "
               "4,000 steps in a trial run); 4 heads per layer keep every head plottable; width 64 keeps training to minutes on one core.")
_ONE_LAYER_WHY = ("The shape Towards Monosemanticity studies (Bricken et al. 2023: one layer, d_model 128, 512 ReLU "
                  "neurons), much smaller vocabulary and context.")

_SPECS = [
    _attn_only("attn-only-1l", 1, 64, 4, 32, _TOY_TRAIN),
    _attn_only("attn-only-2l", 2, 64, 4, 32, _TOY_TRAIN),
    _attn_only("attn-only-3l", 3, 64, 4, 32, _TOY_TRAIN_3L),
    _attn_only("attn-only-1l-ci", 1, 64, 4, 32, _CI_TRAIN),
    _attn_only("attn-only-2l-ci", 2, 64, 4, 32, _CI_TRAIN),
    _lm("toy-lm", 2, 64, 4, 256, "gelu", _LM_TRAIN, _TOY_LM_WHY),
    _lm("toy-1l-mlp", 1, 128, 4, 512, "relu", _ONE_LAYER_TRAIN, _ONE_LAYER_WHY),
    _lm("toy-lm-ci", 2, 64, 4, 256, "gelu", _LM_CI_TRAIN, "toy-lm shrunk to the CI budget (fewer steps)."),
    _lm("toy-1l-mlp-ci", 1, 128, 4, 512, "relu", dataclasses.replace(_LM_CI_TRAIN, n_steps=600),
        "toy-1l-mlp shrunk to the CI budget (fewer steps)."),
    PretrainedModel("gpt2-small", "gpt2", "gpt2", "GPT-2 small (Radford et al. 2019), via TransformerLens",
                    n_layers=12, hub_repos=("gpt2",)),
    PretrainedModel("gelu-1l", "gelu-1l", "NeelNanda/gpt-neox-tokenizer-digits",
                    "Nanda's 1-layer GELU transformer (2048 MLP neurons), the open-source stand-in for Bricken et al.'s "
                    "one-layer model, via TransformerLens",
                    n_layers=1, hub_repos=("NeelNanda/GELU_1L512W_C4_Code", "NeelNanda/gpt-neox-tokenizer-digits")),
    RandomInitModel("gpt2-random", "gpt2-small", "gpt2", GPT2_SMALL_SHAPE,
                    description="GPT-2-small shape, random init, the real GPT-2 tokenizer, no cache: tests and benches"),
]
REGISTRY: dict[str, ToyRecipe | PretrainedModel | RandomInitModel] = {s.name: s for s in _SPECS}


def get_spec(name: str) -> ToyRecipe | PretrainedModel | RandomInitModel:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(sorted(REGISTRY))}") from None

