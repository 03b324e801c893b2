"""One loader for every registered model: ``load_model(name)`` returns a ``HookedTransformer``.

* toy models: rebuilt from their recipe and the safetensors weights the pipeline trained;
* pretrained models: TransformerLens's own ``from_pretrained`` (needs the Hugging Face hub, or a
  local cache of it, the first time). The offline smoke run reads it from a fabricated cache
  (:mod:`mechrepro.fabricate`): the same code, random weights, known from the cache's marker;
* random-init stand-ins (``gpt2-random``): the pretrained model's shape with seeded random weights
  and the real tokenizer, for tests that need GPT-2's shape without any cache.

All three expose TransformerLens hook names, so every technique runs on any of them. One BOS convention for all:
``default_prepend_bos=False`` -- the project's prompts put BOS first themselves (``tasks.prompts.encode_prompt``),
so ``model.to_tokens`` must not add a second one, whichever path loaded the model.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
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


@contextmanager
def _offline_listing():
    """TransformerLens picks a ``NeelNanda/*`` model's checkpoint by listing the repository's files over the network
    (``HfApi.list_repo_files`` in ``loading_from_pretrained.get_pretrained_state_dict``), which fails offline even with
    the whole repository cached. With HF_HUB_OFFLINE set, that listing is answered from the cached snapshot, as
    ``huggingface_hub`` answers every other request offline; online, nothing changes."""
    import transformer_lens.loading_from_pretrained as tl_loading

    from mechrepro import hub

    if not hub.offline():
        yield
        return
    real = tl_loading.HfApi

    class CachedListing(real):
        def list_repo_files(self, repo_id, *args, repo_type=None, **kwargs):
            snap = hub.snapshot(repo_id, repo_type or "model")
            if snap is None:
                raise ModelUnavailableError(f"HF_HUB_OFFLINE is set and {repo_id} is not in the cache {hub.cache_dir()}")
            return sorted(p.relative_to(snap).as_posix() for p in snap.rglob("*") if p.is_file())

    tl_loading.HfApi = CachedListing
    try:
        yield
    finally:
        tl_loading.HfApi = real


@contextmanager
def _weights_only():
    """TransformerLens reads ``*.pth`` checkpoints with ``torch.load(weights_only=False)``, a full unpickle. Forced
    to torch's restricted loader here: tensors and plain containers load, code in a pickle does not run."""
    old = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TORCH_FORCE_WEIGHTS_ONLY_LOAD", None)
        else:
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = old


def hub_tokenizer(repo_id: str):
    """A tokenizer read from its hub repository's ``tokenizer.json`` and ``tokenizer_config.json`` (the cache, offline).
    TransformerLens would ask ``AutoTokenizer``, which in transformers 5 first reads the repository's ``config.json``
    to choose a class; a tokenizer-only repository (gelu-1l's ``NeelNanda/gpt-neox-tokenizer-digits``) need not have
    one. ``add_bos_token`` as TransformerLens sets it (it would otherwise reload the tokenizer to set it)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(repo_id, add_bos_token=True)


def _load_pretrained(spec: PretrainedModel, device: str) -> HookedTransformer:
    from mechrepro import hub

    try:
        with _offline_listing(), _weights_only():
            extra = {} if spec.tokenizer == "gpt2" else {"tokenizer": hub_tokenizer(spec.tokenizer)}
            model = HookedTransformer.from_pretrained(spec.tl_name, device=device, default_prepend_bos=False, **extra)
    except Exception as err:  # OSError / HF hub errors / connection errors, depending on versions
        raise ModelUnavailableError(
            f"cannot load {spec.name!r} ({spec.tl_name!r} via TransformerLens): {type(err).__name__}: {err}\n"
            f"It needs the Hugging Face hub once, or a local cache of it: on a machine with access run "
            f"{'; '.join(hub.HubRepo(r, 'model', spec.name, hub.MODEL_FILES.get(r, ())).download_command() for r in spec.hub_repos)}"
            ", then point HF_HOME at that cache, with HF_HUB_OFFLINE=1. To rehearse this path offline on a "
            "fabricated cache with random weights, run with --config scale=paper smoke=true.") from err
    snap = hub.snapshot(spec.hub_repos[0])
    print(f"{spec.name}: loaded by HookedTransformer.from_pretrained({spec.tl_name!r}) from "
          f"{snap or 'the hub'}{' -- a fabricated cache: random weights' if is_random_weights(spec.name) else ''}")
    return model


def _load_random(spec: RandomInitModel, device: str, tokenizer_dir: str | Path | None) -> HookedTransformer:
    cfg = HookedTransformerConfig(**spec.cfg, seed=spec.seed, init_weights=True, device=device,
                                  default_prepend_bos=False)
    torch.manual_seed(spec.seed)
    print(f"{spec.name}: built by HookedTransformer(cfg) with seeded random weights (no cache, no from_pretrained)")
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
    """The tokenizer of a registered model, without loading its weights (offline for toy models and GPT-2; from the
    Hugging Face cache for another pretrained model's)."""
    from mechrepro.data.tokenizer import load_tokenizer

    spec = get_spec(name)
    if isinstance(spec, ToyRecipe):
        if models_dir is None:
            raise ValueError(f"{name!r} is a toy model: pass models_dir (results/<scale>/models)")
        return load_tokenizer(Path(models_dir) / name / "tokenizer.json")
    if spec.tokenizer != "gpt2":
        return hub_tokenizer(spec.tokenizer)  # from the hub's cache
    return gpt2_tokenizer()


def is_random_weights(name: str) -> bool:
    """Whether ``name``'s weights are random: a random-init stand-in, or a pretrained model whose cached repository
    is marked fabricated (:mod:`mechrepro.fabricate`). Read from the cache, not from the model's name."""
    from mechrepro import hub

    spec = get_spec(name)
    if spec.kind == "random":
        return True
    return spec.kind == "pretrained" and any(hub.is_fabricated(r) for r in spec.hub_repos)


def best_device() -> str:
    """"cuda" when a GPU is visible, else "cpu"."""
    return "cuda" if torch.cuda.is_available() else "cpu"
