"""The token data the SAEs train and are evaluated on.

* ``corpus``: the pipeline's own synthetic corpus (toy and ci scales), whose tokens carry latent variables;
* ``hf:<dataset>``: a pre-tokenized Hugging Face dataset with an ``input_ids`` / ``tokens`` column, as the paper
  scale uses for gelu-1l (Nanda's ``NeelNanda/c4-code-tokenized-2b``, the data gelu-1l was trained on). It needs
  the hub, or a local Hugging Face cache; without either the error says so. A cached snapshot (``hf download
  --repo-type dataset``, or the smoke run's fabricated cache) is read from its parquet shards: offline,
  ``datasets.load_dataset(name)`` ignores hub snapshots and reads only its own prepared cache;
* ``synthetic_text``: the synthetic corpus's *text*, re-tokenized with the model's own tokenizer (e.g. GPT-2's BPE):
  text for a pretrained model without any dataset download. No latents survive re-tokenization.
"""

from __future__ import annotations

import torch
from jaxtyping import Int
from torch import Tensor

from mechrepro.io import load_tensors

SOURCES = ("corpus", "synthetic_text")


def check_source(source: str) -> None:
    if source not in SOURCES and not source.startswith("hf:"):
        raise ValueError(f"monosemanticity.dataset must be one of {SOURCES} or 'hf:<dataset name>', got {source!r}")


def corpus_split(path: str, n_docs: int) -> dict[str, Tensor]:
    """The first ``n_docs`` documents of a corpus split: tokens and latents, [doc pos] each."""
    data = load_tensors(path)
    if n_docs > len(data["tokens"]):
        raise ValueError(f"monosemanticity asks for {n_docs} documents, {path} has {len(data['tokens'])}")
    return {k: v[:n_docs] for k, v in data.items()}


def synthetic_text_tokens(tokenizer, n_docs: int, n_ctx: int, seed: int) -> Int[Tensor, "doc pos"]:
    """``n_docs`` sequences of BOS + ``n_ctx - 1`` tokens of the synthetic corpus's text under ``tokenizer``."""
    from mechrepro.data.corpus import CorpusConfig, document_text, generate

    corpus = generate(CorpusConfig(n_docs=max(4, n_docs), n_ctx=64, seed=seed,
                                   mixture={"ioi": 0.3, "years": 0.2, "narrative": 0.2, "dialogue": 0.2, "code": 0.1}),
                      progress=False)
    ids: list[int] = []
    for doc in corpus["tokens"].tolist():
        ids += tokenizer.encode(document_text(doc) + "\n", add_special_tokens=False)
    width = n_ctx - 1
    n = min(n_docs, len(ids) // width)
    body = torch.tensor(ids[:n * width]).view(n, width)
    return torch.cat([torch.full((n, 1), tokenizer.bos_token_id), body], dim=1)


def _hub_rows(name: str):
    """The dataset's rows, streamed: from the cached snapshot's parquet shards when there is one (or when offline,
    where that is the only way), else from the hub."""
    from datasets import load_dataset

    from mechrepro import hub

    snap = hub.snapshot(name, "dataset")
    files = sorted(str(p) for p in snap.glob(hub.DATASET_FILES)) if snap is not None else []
    if files:
        return load_dataset("parquet", data_files=files, split="train", streaming=True)
    if hub.offline():
        raise OSError(f"HF_HUB_OFFLINE is set and the cache {hub.cache_dir()} holds no {hub.DATASET_FILES} of "
                      f"dataset {name!r}")
    return load_dataset(name, split="train", streaming=True)


def hub_tokens(name: str, n_docs: int, n_ctx: int, skip: int = 0) -> Int[Tensor, "doc pos"]:
    """``n_docs`` rows of a pre-tokenized Hugging Face dataset after the first ``skip``, cut to ``n_ctx`` tokens."""
    try:
        rows = _hub_rows(name).skip(skip)
        out = []
        for row in rows:
            ids = row.get("tokens", row.get("input_ids"))
            if ids is None:
                raise ValueError(f"dataset {name!r} has no 'tokens' or 'input_ids' column")
            out.append(ids[:n_ctx])
            if len(out) == n_docs:
                break
    except ImportError as err:
        raise RuntimeError("the paper scale's SAE data needs the 'datasets' package (pip install datasets)") from err
    except (OSError, ConnectionError) as err:
        raise RuntimeError(
            f"cannot load the dataset {name!r} ({type(err).__name__}: {err}). This machine may have no network: "
            f"fetch it once where there is one (hf download --repo-type dataset {name} --include 'data/*.parquet'), "
            "point HF_HOME at that cache with HF_HUB_OFFLINE=1, or rehearse the path on a fabricated cache "
            "(--config scale=paper smoke=true)") from None
    if len(out) < n_docs:
        raise ValueError(f"dataset {name!r} has {len(out)} rows after the first {skip}; {n_docs} are asked for")
    return torch.tensor(out)


def training_tokens(section: dict, corpus_files: list[str], tokenizer, split: str) -> Int[Tensor, "doc pos"]:
    """The token sequences of a scale config's ``monosemanticity`` section for ``split`` ("train": the SAEs'
    training data, ``n_train_docs`` documents; "heldout": evaluation, ``eval.n_docs``)."""
    source = section["dataset"]
    check_source(source)
    n = section["n_train_docs"] if split == "train" else section["eval"]["n_docs"]
    if source == "corpus":
        if not corpus_files:
            raise ValueError("monosemanticity.dataset 'corpus' needs a toy model that trains on a corpus")
        return corpus_split(corpus_files[0], n)["tokens"]
    seed = section["seed"] + (0 if split == "train" else 10_000)  # held-out text from another seed
    if source == "synthetic_text":
        return synthetic_text_tokens(tokenizer, n, section["n_ctx"], seed)
    return hub_tokens(source[3:], n, section["n_ctx"], skip=0 if split == "train" else section["n_train_docs"])
