"""One loader for every registered model: ``load_model(name)`` returns a ``HookedTransformer``.

* toy models: rebuilt from their recipe and the safetensors weights the pipeline trained;
* pretrained models: TransformerLens's own ``from_pretrained`` (needs the Hugging Face hub, or a
  local cache of it, the first time);
* random-init stand-ins (``gpt2-random``): the pretrained model's shape with seeded random weights
  and the real tokenizer, for offline smoke runs of the paper-scale path.

All three expose TransformerLens hook names, so every technique runs on any of them.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from mechrepro.io import load_tensors, read_json
from mechrepro.models.registry import PretrainedModel, RandomInitModel, ToyRecipe, get_spec

# The GPT-2 BPE files ship inside the package (src/mechrepro/data/gpt2_tokenizer/, OpenAI's Modified MIT License);
# MECHREPRO_GPT2_TOKENIZER points at another folder. Either is checked against the published hashes before use.
GPT2_TOKENIZER_ENV = "MECHREPRO_GPT2_TOKENIZER"
GPT2_TOKENIZER_SHA256 = {
    "vocab.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",  # encoder.json
    "merges.txt": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",  # vocab.bpe
}


class ModelUnavailableError(RuntimeError):
    """A model cannot be loaded here; the message says what is missing and how to provide it."""


def default_gpt2_tokenizer_dir() -> Path:
    if os.environ.get(GPT2_TOKENIZER_ENV):
        return Path(os.environ[GPT2_TOKENIZER_ENV])
    return Path(__file__).resolve().parents[1] / "data" / "gpt2_tokenizer"


def check_gpt2_tokenizer_files(directory: str | Path) -> Path:
    """``directory`` if it holds GPT-2's vocab.json and merges.txt with their published sha256 (the hashes tiktoken
    checks for its ``gpt2`` encoding); else :class:`ModelUnavailableError` naming the file."""
    import hashlib

    d = Path(directory)
    for name, want in GPT2_TOKENIZER_SHA256.items():
        f = d / name
        if not f.exists():
            raise ModelUnavailableError(f"GPT-2 tokenizer file {f} not found (need vocab.json and merges.txt); "
                                        f"set {GPT2_TOKENIZER_ENV} to the folder that holds them")
        got = hashlib.sha256(f.read_bytes()).hexdigest()
        if got != want:
            raise ModelUnavailableError(f"GPT-2 tokenizer file {f} has sha256 {got}, not GPT-2's {want}: "
                                        "a damaged or different file")
    return d


def gpt2_tokenizer(directory: str | Path | None = None):
    """GPT-2's tokenizer from its published vocab/merges files, offline."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    d = check_gpt2_tokenizer_files(directory or default_gpt2_tokenizer_dir())
    vocab, merges = d / "vocab.json", d / "merges.txt"
    bpe = ByteLevelBPETokenizer(str(vocab), str(merges))
    eot = "<|endoftext|>"
    # name_or_path + add_bos_token: TransformerLens uses this object as-is (no hub look-up by name).
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token=eot, eos_token=eot, unk_token=eot,
                                   pad_token=eot, name_or_path=f"gpt2-offline:{d}", add_bos_token=True)


def _load_toy(spec: ToyRecipe, models_dir: Path, checkpoint: str | None, device: str) -> HookedTransformer:
    from mechrepro.data.tokenizer import load_tokenizer

    mdir = models_dir / spec.name
    card = mdir / "model.json"
    if not card.exists():
        raise ModelUnavailableError(f"toy model {spec.name!r} is not trained yet: {card} is missing "
                                    f"(run: snakemake --cores all {card})")
    info = read_json(card)
    weights = mdir / (checkpoint or "model.safetensors")
    model = HookedTransformer(spec.tl_config(info["d_vocab"]), tokenizer=load_tokenizer(mdir / "tokenizer.json"),
                              move_to_device=False)
    try:
        state = load_tensors(weights)
    except ValueError as err:  # corrupt: set aside by load_tensors; the card goes too, so the model is retrained
        card.replace(card.with_name(card.name + ".invalid"))
        raise ModelUnavailableError(f"toy model {spec.name!r}: {err}. Its card {card.name} was set aside as well, "
                                    "so the rerun retrains the model (from its resume state, if that is intact)") from err
    model.load_state_dict(state)
    return model.to(device)


def _load_pretrained(spec: PretrainedModel, device: str) -> HookedTransformer:
    try:
        return HookedTransformer.from_pretrained(spec.tl_name, device=device)
    except Exception as err:  # OSError / HF hub errors / connection errors, depending on versions
        raise ModelUnavailableError(
            f"cannot load {spec.name!r} ({spec.tl_name!r} via TransformerLens): {type(err).__name__}: {err}\n"
            "It needs the Hugging Face hub once, or a local cache of it: download it on a machine with access "
            "(python -c \"from transformer_lens import HookedTransformer; "
            f"HookedTransformer.from_pretrained('{spec.tl_name}')\") and point HF_HOME at that cache, "
            "with HF_HUB_OFFLINE=1. To exercise this path offline with random weights, run with "
            "--config scale=paper smoke=true.") from err


def _load_random(spec: RandomInitModel, device: str, tokenizer_dir: str | Path | None) -> HookedTransformer:
    cfg = HookedTransformerConfig(**spec.cfg, seed=spec.seed, init_weights=True, device=device,
                                  default_prepend_bos=False)
    torch.manual_seed(spec.seed)
    return HookedTransformer(cfg, tokenizer=gpt2_tokenizer(tokenizer_dir))


def load_model(name: str, *, models_dir: str | Path | None = None, checkpoint: str | None = None,
               device: str = "cpu", tokenizer_dir: str | Path | None = None) -> HookedTransformer:
    """Load any registered model in eval mode.

    ``models_dir`` (``results/<scale>/models``) is where toy models were trained; ``checkpoint``
    picks one of a toy model's kept checkpoints (a path relative to its folder).
    """
    spec = get_spec(name)
    if isinstance(spec, ToyRecipe):
        if models_dir is None:
            raise ValueError(f"{name!r} is a toy model: pass models_dir (results/<scale>/models)")
        model = _load_toy(spec, Path(models_dir), checkpoint, device)
    elif isinstance(spec, PretrainedModel):
        model = _load_pretrained(spec, device)
    else:
        model = _load_random(spec, device, tokenizer_dir)
    model.eval()
    return model


def load_tokenizer_for(name: str, models_dir: str | Path | None = None):
    """The tokenizer of a registered model, without loading its weights (offline for every kind)."""
    from mechrepro.data.tokenizer import load_tokenizer

    spec = get_spec(name)
    if isinstance(spec, ToyRecipe):
        if models_dir is None:
            raise ValueError(f"{name!r} is a toy model: pass models_dir (results/<scale>/models)")
        return load_tokenizer(Path(models_dir) / name / "tokenizer.json")
    if spec.tokenizer != "gpt2":
        raise ModelUnavailableError(f"no offline tokenizer for {name!r} ({spec.tokenizer})")
    return gpt2_tokenizer()


def is_random_weights(name: str) -> bool:
    return get_spec(name).kind == "random"


def best_device() -> str:
    """"cuda" when a GPU is visible, else "cpu"."""
    return "cuda" if torch.cuda.is_available() else "cpu"
