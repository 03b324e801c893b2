"""A fabricated offline Hugging Face hub cache: the paper scale's repositories with random weights.

No machine this project runs on can reach the Hugging Face hub, so the paper-scale path (GPT-2 small and gelu-1l
through TransformerLens, SAELens's ``gpt2-small-res-jb`` SAEs, the pre-tokenized datasets) would otherwise never run
here. :func:`fabricate_cache` writes those repositories, seeded and shrunk, in exactly the layout ``huggingface_hub``
reads (``<root>/hub/models--gpt2/{blobs/<hash>, snapshots/<revision>/<file> -> ../../blobs/<hash>, refs/main}``), so
that with ``HF_HOME=<root>`` and ``HF_HUB_OFFLINE=1`` the *real*, unmodified loaders run on them: the plumbing,
shapes, hook names and file formats are rehearsed, and every number computed from them is "not comparable".

What is kept real: GPT-2's depth and heads (12 x 12), its vocabulary and the real BPE tokenizer files, context 1024,
the SAE and dataset file names, keys and dtypes. What is shrunk: the width (``d_model``), the SAE dictionary size
and the number of documents. Each fabricated repository says so: a ``mechrepro_fabricated`` key in its config
(``config.json``, each SAE's ``cfg.json``) or, for datasets, a ``mechrepro_fabricated.json`` file; see
:func:`is_fabricated`. Both ``HF_HOME`` and ``HF_HUB_OFFLINE`` are read once, when ``huggingface_hub`` is first
imported: set them before any import of transformers / TransformerLens / SAELens / datasets (a fresh process).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MARKER = "mechrepro_fabricated"
NOTE = "random weights, fabricated offline by mechrepro.fabricate; numbers are not comparable"
GPT2_REPO = "gpt2"
GELU_1L_REPO = "NeelNanda/GELU_1L512W_C4_Code"
GELU_1L_TOKENIZER_REPO = "NeelNanda/gpt-neox-tokenizer-digits"  # gelu-1l's tokenizer (TransformerLens's config names it)
SAE_REPO = "jbloom/GPT2-Small-SAEs-Reformatted"  # SAELens's release gpt2-small-res-jb
GPT2_VOCAB, GPT2_CTX, GPT2_LAYERS, GPT2_HEADS = 50257, 1024, 12, 12
GELU_1L_VOCAB, GELU_1L_HEADS = 48262, 8
# dataset id -> (token column, vocabulary, BOS id) of the real dataset
DATASETS: dict[str, tuple[str, int, int]] = {
    "apollo-research/Skylion007-openwebtext-tokenizer-gpt2": ("input_ids", GPT2_VOCAB, 50256),
    "NeelNanda/c4-code-tokenized-2b": ("tokens", GELU_1L_VOCAB, 0),
}
_LFS = (".safetensors", ".parquet", ".pth", ".bin")  # stored through git LFS on the hub: blob named by sha256


def _marker(seed: int, **extra: Any) -> dict[str, Any]:
    return {"note": NOTE, "seed": seed, **extra}


def _json(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def _blob_name(path: str, data: bytes) -> str:
    """The blob name the hub gives a file: its sha256 for LFS files, else its git blob sha1."""
    if path.endswith(_LFS):
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _write_repo(hub: Path, repo_type: str, repo_id: str, files: dict[str, bytes]) -> tuple[Path, str]:
    """Write one repository in the cache layout under ``hub``; returns its folder and (deterministic) revision."""
    blobs = {path: _blob_name(path, data) for path, data in files.items()}
    revision = hashlib.sha1(_json(sorted(blobs.items()))).hexdigest()
    from mechrepro.hub import repo_folder

    folder = repo_folder(repo_id, repo_type, hub)
    (folder / "blobs").mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(revision)  # the hub writes no newline
    for path, data in sorted(files.items()):
        blob = folder / "blobs" / blobs[path]
        if not blob.exists():
            blob.write_bytes(data)
        link = folder / "snapshots" / revision / path
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return folder, revision


def _tensors(shapes: dict[str, tuple[int, ...]], seed: int, ones: Iterable[str] = ()) -> dict[str, Any]:
    """Seeded normal tensors (std 0.02; around 1 for the names in ``ones``, LayerNorm scales), in key order."""
    import torch

    g = torch.Generator().manual_seed(seed)
    ones = set(ones)
    return {k: (1.0 if k in ones else 0.0) + 0.02 * torch.randn(s, generator=g) for k, s in shapes.items()}


def _safetensors(tensors: dict[str, Any], metadata: dict[str, str] | None = None) -> bytes:
    from safetensors.torch import save

    return save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata)


def gpt2_files(d_model: int, seed: int, tokenizer_dir: str | Path) -> dict[str, bytes]:
    """``gpt2``: an HF ``GPT2LMHeadModel`` checkpoint of GPT-2 small's depth/heads/vocab at width ``d_model``, with
    the real BPE files. Weight keys as in the real ``model.safetensors`` (``h.0.attn.c_attn.weight``..., Conv1D
    layout [in, out], the unembedding tied to ``wte``)."""
    if d_model % GPT2_HEADS:
        raise ValueError(f"gpt2_d_model must be a multiple of {GPT2_HEADS} (the head count), got {d_model}")
    d, tok = d_model, Path(tokenizer_dir)
    shapes: dict[str, tuple[int, ...]] = {"wte.weight": (GPT2_VOCAB, d), "wpe.weight": (GPT2_CTX, d)}
    for i in range(GPT2_LAYERS):
        p = f"h.{i}."
        shapes |= {p + "ln_1.weight": (d,), p + "ln_1.bias": (d,), p + "attn.c_attn.weight": (d, 3 * d),
                   p + "attn.c_attn.bias": (3 * d,), p + "attn.c_proj.weight": (d, d), p + "attn.c_proj.bias": (d,),
                   p + "ln_2.weight": (d,), p + "ln_2.bias": (d,), p + "mlp.c_fc.weight": (d, 4 * d),
                   p + "mlp.c_fc.bias": (4 * d,), p + "mlp.c_proj.weight": (4 * d, d), p + "mlp.c_proj.bias": (d,)}
    shapes |= {"ln_f.weight": (d,), "ln_f.bias": (d,)}
    weights = _tensors(shapes, seed, ones=[k for k in shapes if ".ln_" in f".{k}" and k.endswith("weight")])
    config = {  # the real gpt2 config.json, with the width changed and the marker added
        "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
        "bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256, "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": GPT2_CTX, "n_embd": d, "n_head": GPT2_HEADS,
        "n_layer": GPT2_LAYERS, "n_positions": GPT2_CTX, "resid_pdrop": 0.1, "summary_activation": None,
        "summary_first_dropout": 0.1, "summary_proj_to_labels": True, "summary_type": "cls_index",
        "summary_use_proj": True, "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 50}},
        "vocab_size": GPT2_VOCAB, MARKER: _marker(seed, stands_in_for="gpt2 (GPT-2 small, d_model 768)")}
    return {"config.json": _json(config),
            "generation_config.json": _json({"bos_token_id": 50256, "eos_token_id": 50256}),
            "model.safetensors": _safetensors(weights, {"format": "pt"}),
            "tokenizer_config.json": _json({"model_max_length": GPT2_CTX}),
            "vocab.json": (tok / "vocab.json").read_bytes(), "merges.txt": (tok / "merges.txt").read_bytes()}


def gelu_1l_tokenizer_files(gpt2_tokenizer_dir: str | Path, seed: int) -> dict[str, bytes]:
    """``NeelNanda/gpt-neox-tokenizer-digits`` stand-in: its real files are not available here, so a byte-level BPE
    of exactly gelu-1l's 48,262 tokens is made from GPT-2's: ``<|endoftext|>`` at id 0 (BOS/EOS/PAD, as in the
    GPT-NeoX tokenizer), then GPT-2's first 48,261 tokens, with the merges among them. Any id of the vocabulary
    decodes; the ids are not the real tokenizer's (marked in ``tokenizer_config.json``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    d = Path(gpt2_tokenizer_dir)
    gpt2 = json.loads((d / "vocab.json").read_text())
    eot = "<|endoftext|>"
    vocab = {eot: 0, **{t: i + 1 for t, i in sorted(gpt2.items(), key=lambda kv: kv[1]) if i < GELU_1L_VOCAB - 1}}
    merges = []
    for line in (d / "merges.txt").read_text(encoding="utf-8").splitlines()[1:]:
        a, b = line.split(" ")
        if a in vocab and b in vocab and a + b in vocab:
            merges.append((a, b))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([eot])
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": eot, "eos_token": eot, "unk_token": eot,
              "pad_token": eot, "model_max_length": GPT2_CTX,
              MARKER: _marker(seed, stands_in_for=f"{GELU_1L_TOKENIZER_REPO} (GPT-NeoX BPE, digits split): "
                                                  "GPT-2's first 48,261 tokens")}
    return {"tokenizer.json": tok.to_str().encode() + b"\n", "tokenizer_config.json": _json(config),
            "special_tokens_map.json": _json({"bos_token": eot, "eos_token": eot, "unk_token": eot, "pad_token": eot})}


def gelu_1l_files(d_model: int, seed: int) -> dict[str, bytes]:
    """``NeelNanda/GELU_1L512W_C4_Code`` (TransformerLens's gelu-1l): its own-format ``config.json`` and the
    HookedTransformer state dict ``model_final.pth`` (a plain dict of tensors: ``torch.load(weights_only=True)``
    reads it), 1 layer of 8 heads at width ``d_model`` with the real 48,262-token vocabulary."""
    import torch

    d, h = d_model, GELU_1L_HEADS
    if d % h:
        raise ValueError(f"gelu_d_model must be a multiple of {h}, got {d}")
    dh, dm = d // h, 4 * d
    shapes = {"embed.W_E": (GELU_1L_VOCAB, d), "pos_embed.W_pos": (GPT2_CTX, d), "blocks.0.ln1.w": (d,),
              "blocks.0.ln1.b": (d,), **{f"blocks.0.attn.W_{x}": (h, d, dh) for x in "QKV"},
              "blocks.0.attn.W_O": (h, dh, d), **{f"blocks.0.attn.b_{x}": (h, dh) for x in "QKV"},
              "blocks.0.attn.b_O": (d,), "blocks.0.ln2.w": (d,), "blocks.0.ln2.b": (d,), "blocks.0.mlp.W_in": (d, dm),
              "blocks.0.mlp.b_in": (dm,), "blocks.0.mlp.W_out": (dm, d), "blocks.0.mlp.b_out": (d,),
              "ln_final.w": (d,), "ln_final.b": (d,), "unembed.W_U": (d, GELU_1L_VOCAB), "unembed.b_U": (GELU_1L_VOCAB,)}
    state = _tensors(shapes, seed, ones=["blocks.0.ln1.w", "blocks.0.ln2.w", "ln_final.w"])
    buf = io.BytesIO()
    torch.save(state, buf)
    config = {"act_fn": "gelu", "attn_only": False, "d_head": dh, "d_mlp": dm, "d_model": d, "d_vocab": GELU_1L_VOCAB,
              "ln_eps": 1e-5, "n_ctx": GPT2_CTX, "n_heads": h, "n_layers": 1, "normalization": "LN",
              "shortformer_pos": False, "tokenizer_name": "NeelNanda/gpt-neox-tokenizer-digits",
              MARKER: _marker(seed, stands_in_for="gelu-1l (d_model 512, d_mlp 2048)")}
    return {"config.json": _json(config), "model_final.pth": buf.getvalue()}


def sae_files(layers: Iterable[int], d_in: int, d_sae: int, seed: int) -> dict[str, bytes]:
    """``jbloom/GPT2-Small-SAEs-Reformatted``: per layer, ``blocks.<L>.hook_resid_pre/{cfg.json, sae_weights.safetensors
    (W_enc [d_in d_sae], b_enc, W_dec [d_sae d_in], b_dec; float32), sparsity.safetensors (sparsity [d_sae], log10
    feature density)}``, the config in the pre-6.0 SAELens format of the real files."""
    import torch

    out: dict[str, bytes] = {}
    for layer in layers:
        hook = f"blocks.{layer}.hook_resid_pre"
        w = _tensors({"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)},
                     seed * 1000 + layer + 1)
        w["W_enc"], w["W_dec"] = w["W_enc"] * 25, w["W_dec"] * 25  # std 0.5: some latents fire on activations
        g = torch.Generator().manual_seed(seed * 1000 + layer + 500)
        sparsity = -1 - 5 * torch.rand(d_sae, generator=g)
        cfg = {"model_name": "gpt2-small", "hook_point": hook, "hook_point_layer": layer,
               "hook_point_head_index": None, "dataset_path": "Skylion007/openwebtext", "is_dataset_tokenized": False,
               "context_size": 128, "d_in": d_in, "d_sae": d_sae, "expansion_factor": d_sae // d_in,
               "dtype": "torch.float32", "device": "cpu", "seed": 42, "b_dec_init_method": "geometric_median",
               "l1_coefficient": 8e-05, "lr": 0.0004, "train_batch_size": 4096, "total_training_tokens": 300000000,
               MARKER: _marker(seed, stands_in_for=f"gpt2-small-res-jb {hook} (d_in 768, d_sae 24576)")}
        out |= {f"{hook}/cfg.json": _json(cfg), f"{hook}/sae_weights.safetensors": _safetensors(w),
                f"{hook}/sparsity.safetensors": _safetensors({"sparsity": sparsity})}
    return out


def dataset_files(repo_id: str, n_docs: int, doc_len: int, seed: int) -> dict[str, bytes]:
    """A pre-tokenized dataset: ``data/train-00000-of-00001.parquet`` (the real repos' naming, one shard) with one
    list-of-int64 column named as the real one's, ``n_docs`` rows of BOS + random tokens, and the marker file."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    column, vocab, bos = DATASETS[repo_id]
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab, (n_docs, doc_len), generator=g)
    tokens[:, 0] = bos
    buf = io.BytesIO()
    pq.write_table(pa.table({column: pa.array(tokens.tolist(), pa.list_(pa.int64()))}), buf)
    return {"data/train-00000-of-00001.parquet": buf.getvalue(),
            f"{MARKER}.json": _json({MARKER: _marker(seed, stands_in_for=repo_id, column=column, n_docs=n_docs)})}


def fabricate_cache(root: str | Path, *, gpt2_d_model: int = 96, gelu_d_model: int = 64,
                    sae_layers: Iterable[int] = (0, 4, 8, 11), d_sae: int = 512, n_docs: int = 256,
                    doc_len: int = 1024, seed: int = 0, tokenizer_dir: str | Path | None = None) -> dict[str, Any]:
    """Write every fabricated repository under ``<root>/hub`` (point ``HF_HOME`` at ``root``). Idempotent: a
    repository already at the same revision (a hash of its files' bytes) is left as it is; a different one is
    replaced whole. Each is built in a temporary folder beside it and renamed into place. Same arguments, same
    bytes. Returns, per repository, its type, revision, files and whether it was written."""
    if tokenizer_dir is None:
        from mechrepro.models.load import check_gpt2_tokenizer_files, default_gpt2_tokenizer_dir

        tokenizer_dir = check_gpt2_tokenizer_files(default_gpt2_tokenizer_dir())
    root = Path(root)
    hub = root / "hub"
    hub.mkdir(parents=True, exist_ok=True)
    repos: list[tuple[str, str, dict[str, bytes]]] = [
        ("model", GPT2_REPO, gpt2_files(gpt2_d_model, seed, tokenizer_dir)),
        ("model", GELU_1L_REPO, gelu_1l_files(gelu_d_model, seed)),
        ("model", GELU_1L_TOKENIZER_REPO, gelu_1l_tokenizer_files(tokenizer_dir, seed)),
        ("model", SAE_REPO, sae_files(sorted(set(sae_layers)), gpt2_d_model, d_sae, seed)),
        *(("dataset", name, dataset_files(name, n_docs, doc_len, seed + 7 + i)) for i, name in enumerate(DATASETS))]
    out: dict[str, Any] = {"root": str(root), "hub": str(hub), "repos": {}}
    for repo_type, repo_id, files in repos:
        with tempfile.TemporaryDirectory(prefix=".fabricate.", dir=hub) as tmp:
            new, revision = _write_repo(Path(tmp), repo_type, repo_id, files)
            dest = hub / new.name
            ref = dest / "refs" / "main"
            current = ref.read_text().strip() if ref.is_file() else None
            written = current != revision or not all((dest / "snapshots" / revision / f).is_file() for f in files)
            if written:
                if dest.exists():
                    dest.rename(Path(tmp) / "old")  # removed with the temporary folder
                new.rename(dest)
        out["repos"][repo_id] = {"type": repo_type, "revision": revision, "files": sorted(files),
                                 "folder": str(dest), "written": written}
    return out


def is_fabricated(config: str | Path | dict[str, Any]) -> bool:
    """Whether a config (a dict, a JSON file) or a cached repository (its ``models--*`` / ``datasets--*`` folder or
    a snapshot folder) was fabricated by :func:`fabricate_cache`."""
    if isinstance(config, dict):
        return MARKER in config
    path = Path(config)
    if path.is_file():
        return MARKER in json.loads(path.read_text())
    if (path / "refs" / "main").is_file():
        path = path / "snapshots" / (path / "refs" / "main").read_text().strip()
    return any(p.is_file() and is_fabricated(p) for p in (path / "config.json", path / "tokenizer_config.json",
                                                         path / f"{MARKER}.json", *sorted(path.glob("*/cfg.json"))))


def cached_repo(repo_id: str, repo_type: str = "model", hub: str | Path | None = None) -> Path:
    """The cache folder of a repository (``<hub>/models--org--name``); ``hub`` defaults to the one
    ``huggingface_hub`` would use (:func:`mechrepro.hub.cache_dir`)."""
    from mechrepro.hub import repo_folder

    return repo_folder(repo_id, repo_type, hub)


def fabricate_for(cfg: dict, root: str | Path) -> dict[str, Any]:
    """The cache a resolved paper-scale config reads, fabricated under ``root`` (settings: the config's
    ``fabricated_hub`` section; SAEs: the layers ``monosemanticity.pretrained`` names), then checked the way a
    user's cache is: :func:`mechrepro.hub.missing` must find every file the config's loaders read, or this raises
    with :func:`mechrepro.hub.explain`'s list (a fabricated cache that drifted from what the jobs read)."""
    from mechrepro import hub

    settings = dict(cfg.get("fabricated_hub") or {})
    pre = cfg.get("monosemanticity", {}).get("pretrained")
    if pre:
        settings["sae_layers"] = sorted(set(pre["layers"]))
    written = fabricate_cache(root, **settings)
    gone = hub.missing(cfg, cache=Path(root) / "hub", reachable=False)
    if gone:
        raise RuntimeError("the fabricated cache lacks files the paper scale reads:\n"
                           + hub.explain(gone, Path(root) / "hub", reason="nothing is downloaded in a smoke run"))
    return {**written, "settings": settings, "checked": [r.repo_id for r in hub.requirements(cfg)]}
