"""The fabricated offline hub cache: the real loaders (TransformerLens, transformers, SAELens, datasets) read it with
HF_HUB_OFFLINE=1 and no network, and get the fabricated weights back.

``huggingface_hub`` reads HF_HOME / HF_HUB_CACHE / HF_HUB_OFFLINE once, at import (``huggingface_hub.constants``;
TransformerLens also freezes the cache folder into a default argument, and ``datasets`` copies them into its own
config). The test session has imported all of them already (conftest imports TransformerLens), so setting the
environment with monkeypatch would not reach them: the loaders run in one fresh subprocess, with the environment set
before its first import and sockets blocked, and report back as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mechrepro.fabricate import (
    DATASETS,
    GELU_1L_TOKENIZER_REPO,
    GPT2_REPO,
    SAE_REPO,
    cached_repo,
    fabricate_cache,
    is_fabricated,
)

ARGS = dict(gpt2_d_model=96, gelu_d_model=64, sae_layers=(0, 4), d_sae=256, n_docs=16, doc_len=64, seed=3)

# Runs in a fresh interpreter with HF_HOME=<fabricated root>, HF_HUB_OFFLINE=1.
CHECKS = r'''
import json, socket, sys
attempts = []
def refuse(*args, **kwargs):
    attempts.append(repr(args)[:200])
    raise OSError("network blocked by test_fabricate")
socket.socket.connect = socket.create_connection = socket.getaddrinfo = refuse

from pathlib import Path
import einops, torch
from huggingface_hub import hf_hub_download, snapshot_download
from safetensors.torch import load_file
from transformer_lens import HookedTransformer
out = {}

model = HookedTransformer.from_pretrained("gpt2", device="cpu")
c = model.cfg
out["gpt2_shape"] = [c.n_layers, c.n_heads, c.d_model, c.d_head, c.d_mlp, c.n_ctx, c.d_vocab]
out["gpt2_str_tokens"] = model.to_str_tokens(" Mary and John")
ids = model.tokenizer.encode(" Mary and John", add_special_tokens=False)
out["tokenizer"] = [ids, model.tokenizer.decode(ids)]
raw = HookedTransformer.from_pretrained_no_processing("gpt2", device="cpu")
sd = load_file(hf_hub_download("gpt2", "model.safetensors"))
same = [torch.equal(raw.W_E, sd["wte.weight"]), torch.equal(raw.W_pos, sd["wpe.weight"]),
        torch.equal(raw.W_U, sd["wte.weight"].T)]
for l in range(c.n_layers):
    q = sd[f"h.{l}.attn.c_attn.weight"][:, :c.d_model]
    same += [torch.equal(raw.blocks[l].attn.W_Q, einops.rearrange(q, "m (i h) -> i m h", i=c.n_heads)),
             torch.equal(raw.blocks[l].mlp.W_in, sd[f"h.{l}.mlp.c_fc.weight"]),
             torch.equal(raw.blocks[l].ln1.w, sd[f"h.{l}.ln_1.weight"])]
out["gpt2_weights_equal"] = all(same)

from sae_lens import SAE
sae = SAE.from_pretrained("gpt2-small-res-jb", "blocks.4.hook_resid_pre")
w = load_file(hf_hub_download("jbloom/GPT2-Small-SAEs-Reformatted", "blocks.4.hook_resid_pre/sae_weights.safetensors"))
_, cache = model.run_with_cache(model.to_tokens(" Mary and John went to the store"), names_filter="blocks.4.hook_resid_pre")
feats = sae.encode(cache["blocks.4.hook_resid_pre"])
out["sae"] = [type(sae).__name__, sae.cfg.d_in, sae.cfg.d_sae, torch.equal(sae.W_enc, w["W_enc"]), list(feats.shape)]

# gelu-1l: from_pretrained lists the repo's files over the network (HfApi.list_repo_files), so only its pieces
# are checked: TransformerLens's own config reader and the checkpoint, read without unpickling code.
from transformer_lens.loading_from_pretrained import get_pretrained_model_config
gcfg = get_pretrained_model_config("gelu-1l", device="cpu")
tokenizer_repo, gcfg.tokenizer_name = gcfg.tokenizer_name, None  # not fabricated (its files are not here)
gelu = HookedTransformer(gcfg)
state = torch.load(hf_hub_download("NeelNanda/GELU_1L512W_C4_Code", "model_final.pth"), weights_only=True)
gelu.load_state_dict(state, strict=False)
out["gelu"] = [tokenizer_repo, gcfg.n_layers, gcfg.n_heads, gcfg.d_model, gcfg.d_mlp, gcfg.d_vocab, gcfg.act_fn,
               all(torch.equal(v, gelu.state_dict()[k]) for k, v in state.items())]
try:  # TransformerLens alone: it lists the repository's files over the network, refused offline
    HookedTransformer.from_pretrained("gelu-1l", device="cpu")
    out["gelu_from_pretrained"] = "loaded"
except Exception as err:
    out["gelu_from_pretrained"] = type(err).__name__

# The project's loaders: the same from_pretrained, the listing answered from the cache, one BOS convention
from mechrepro.models.load import gpt2_tokenizer, is_random_weights, load_model
from mechrepro.tasks.prompts import encode_prompt
ours = load_model("gpt2-small")
text = " When Mary and John went to the store, John gave a drink to"
out["ours_gpt2"] = [ours.cfg.default_prepend_bos, encode_prompt(ours.tokenizer, text) == encode_prompt(gpt2_tokenizer(), text),
                    ours.to_tokens(text)[0].tolist() == encode_prompt(gpt2_tokenizer(), text)[1:]]
g1 = load_model("gelu-1l")
out["ours_gelu"] = [g1.cfg.n_layers, g1.cfg.d_mlp, g1.cfg.d_vocab, g1.cfg.default_prepend_bos, len(g1.tokenizer),
                    g1.tokenizer.bos_token_id, list(g1(torch.tensor([[0, 5, 7]])).shape)]
out["random_weights"] = [is_random_weights("gpt2-small"), is_random_weights("gelu-1l")]

import datasets
from mechrepro.sae.data import hub_tokens
out["datasets"] = {}
for name in sys.argv[1:]:
    try:
        datasets.load_dataset(name, split="train", streaming=True)
        by_name = "loaded"
    except Exception as err:
        by_name = type(err).__name__
    snap = snapshot_download(name, repo_type="dataset", local_files_only=True)
    files = sorted(str(p) for p in Path(snap).glob("data/*.parquet"))
    rows = list(datasets.load_dataset("parquet", data_files=files, split="train", streaming=True))
    ours = hub_tokens(name, 3, 10, skip=2)
    out["datasets"][name] = [by_name, len(rows), {k: len(v) for k, v in rows[0].items()}, list(ours.shape),
                             ours.tolist() == [r[k][:10] for r in rows[2:5] for k in r]]
out["network_attempts"] = attempts
print("RESULT " + json.dumps(out))
'''


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> dict:
    return fabricate_cache(tmp_path_factory.mktemp("hf"), **ARGS)


@pytest.fixture(scope="module")
def loaded(cache) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    env |= {"HF_HOME": cache["root"], "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    run = subprocess.run([sys.executable, "-c", CHECKS, *DATASETS], env=env, capture_output=True, text=True,
                         timeout=300)
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith("RESULT ")]
    assert run.returncode == 0 and lines, run.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


def test_layout_is_the_hub_cache(cache):
    gpt2 = cached_repo(GPT2_REPO, hub=cache["hub"])
    revision = (gpt2 / "refs" / "main").read_text()
    assert len(revision) == 40 and revision == cache["repos"][GPT2_REPO]["revision"]
    link = gpt2 / "snapshots" / revision / "model.safetensors"
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    assert link.resolve().parent == (gpt2 / "blobs").resolve() and len(link.resolve().name) == 64  # LFS: sha256
    assert len((gpt2 / "snapshots" / revision / "config.json").resolve().name) == 40  # git blob sha1


def test_gpt2_loads_offline_with_the_fabricated_weights(loaded):
    assert loaded["gpt2_shape"] == [12, 12, 96, 8, 384, 1024, 50257]
    assert loaded["gpt2_weights_equal"]
    assert loaded["network_attempts"] == []


def test_the_real_gpt2_tokenizer_round_trips(loaded):
    assert loaded["gpt2_str_tokens"] == ["<|endoftext|>", " Mary", " and", " John"]
    assert loaded["tokenizer"] == [[5335, 290, 1757], " Mary and John"]


def test_sae_lens_loads_the_fabricated_sae(loaded):
    assert loaded["sae"] == ["StandardSAE", 96, 256, True, [1, 8, 256]]  # BOS + 7 tokens


def test_gelu_1l_loads_offline_through_the_project_loader_only(loaded):
    assert loaded["gelu"] == ["NeelNanda/gpt-neox-tokenizer-digits", 1, 8, 64, 256, 48262, "gelu", True]
    # the defect: TransformerLens alone lists the repository's files over the network, refused offline ...
    assert loaded["gelu_from_pretrained"] != "loaded"
    # ... the project's loader answers that listing from the cache and reads the tokenizer's own files
    assert loaded["ours_gelu"] == [1, 256, 48262, False, 48262, 0, [1, 3, 48262]]


def test_one_bos_convention_and_random_weights_from_the_marker(loaded):
    # from_pretrained would prepend BOS in to_tokens; the project's prompts add it themselves (both paths agree)
    assert loaded["ours_gpt2"] == [False, True, True]
    assert loaded["random_weights"] == [True, True]


def test_datasets_load_through_the_parquet_files(loaded):
    for name, (column, _, _) in DATASETS.items():
        by_name, n_rows, lengths, ours, same = loaded["datasets"][name]
        assert by_name != "loaded"  # load_dataset(name) asks the hub; the snapshot's parquet files do not
        assert n_rows == ARGS["n_docs"] and lengths == {column: ARGS["doc_len"]}
        assert ours == [3, 10] and same  # mechrepro.sae.data.hub_tokens reads the shards


def test_marker(cache):
    hub = cache["hub"]
    for repo_id, info in cache["repos"].items():
        assert is_fabricated(cached_repo(repo_id, info["type"], hub)), repo_id
    snap = next((cached_repo(SAE_REPO, hub=hub) / "snapshots").iterdir())
    assert is_fabricated(snap / "blocks.0.hook_resid_pre" / "cfg.json")
    assert not is_fabricated({"n_embd": 768}) and not is_fabricated(Path(cache["root"]))
    assert GELU_1L_TOKENIZER_REPO in cache["repos"]


def test_deterministic_and_idempotent(cache, tmp_path):
    again = fabricate_cache(cache["root"], **ARGS)
    assert not any(r["written"] for r in again["repos"].values())
    other = fabricate_cache(tmp_path, **ARGS)
    for repo_id, info in cache["repos"].items():
        a, b = Path(info["folder"]) / "blobs", Path(other["repos"][repo_id]["folder"]) / "blobs"
        assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
        assert all((a / p.name).read_bytes() == p.read_bytes() for p in b.iterdir())
    reseeded = fabricate_cache(tmp_path, **{**ARGS, "seed": 4})
    assert reseeded["repos"][GPT2_REPO]["written"]
    assert reseeded["repos"][GPT2_REPO]["revision"] != cache["repos"][GPT2_REPO]["revision"]
    assert len(list((Path(reseeded["hub"]) / "models--gpt2" / "snapshots").iterdir())) == 1  # replaced whole
