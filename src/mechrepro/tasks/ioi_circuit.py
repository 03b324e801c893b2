"""Finding the IOI circuit as Wang et al. 2022 (*Interpretability in the Wild*, §3) did: backwards from the logits.

1. Path patching (ABC -> clean) from every head to the logits: heads whose direct effect lowers the logit
   difference and that attend END -> IO and copy names are **name movers**; those that raise it, attend to
   IO and copy names negatively are **negative name movers** (§3.1).
2. Path patching to the name movers' queries, senders at END: **S-inhibition** heads (§3.2).
3. Path patching to the S-inhibition heads' values, senders at S2: **induction** heads (attend S2 -> S1+1)
   and **duplicate-token** heads (attend S2 -> S1) (§3.3).
4. Path patching to the induction heads' keys, senders at S1+1: **previous-token** heads (§3.3).

Effects are relative: (patched - clean) / clean logit difference. A head belongs to the first class whose
rule it meets; the thresholds live in the config (``ioi`` section). Plus the views a reviewer expects: the
activation patching of the residual stream (layer x role) and of heads, attention from END to IO and S,
and the copy scores of §3.1 (the OV circuit of a head applied to name tokens after the first MLP).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import Tensor
from transformer_lens import HookedTransformer, utils

from mechrepro.data.tokenizer import single_token_id
from mechrepro.tasks.ioi import (
    CLASS_POSITIONS,
    PAPER_CIRCUIT,
    VOCABULARIES,
    IOIConfig,
    PromptGroup,
    group_prompts,
    ioi_dataset,
    over_groups,
)
from mechrepro.techniques import circuits as C
from mechrepro.techniques.circuits import Circuit
from mechrepro.techniques.patching import patch_sweep
from mechrepro.techniques.path_patching import path_patch

ROLES = ("io", "s1", "s1+1", "s2", "end")
CLASSES = ("name_mover", "negative_name_mover", "s_inhibition", "induction", "duplicate_token", "previous_token")
# Wang et al. §4: heads outside the circuit take their mean output over the ABC prompts; MLPs are never ablated
# (the circuit is a set of heads).
ABLATION = C.Ablation(source="mean", mlps=False, protocols={
    "paper": "every head outside the circuit, and each circuit head at every position except the one its class "
             "acts at (END for name movers and S-inhibition, S2 for induction and duplicate-token, S1+1 for "
             "previous-token heads), is replaced by its mean output over the ABC prompts of the same template "
             "and order, position by position (Wang et al.'s code, SEQ_POS_TO_KEEP)",
    "all_positions": "every head outside the circuit is replaced by its mean output over the ABC prompts of the "
                     "same template and order, position by position; circuit heads are kept at every position",
})


Clean = dict[tuple[str, str], Tensor]  # (template, order) -> the group's clean logit difference


@torch.inference_mode()
def clean_metrics(model: HookedTransformer, groups: list[PromptGroup]) -> Clean:
    """Each group's clean logit difference: one forward pass per group, shared by every relative effect below."""
    return {(g.template, g.order): g.metric(model(g.clean.to(model.cfg.device))).cpu() for g in groups}


def logit_diffs(model: HookedTransformer, groups: list[PromptGroup], clean: Clean) -> dict[str, float]:
    """Clean and ABC-corrupted logit difference (the corrupted one measured with the clean IO and S)."""
    with torch.inference_mode():
        corr = over_groups(groups, lambda g: g.metric(model(g.corrupted.to(model.cfg.device))))
    return {"clean": float(over_groups(groups, lambda g: clean[g.template, g.order])), "corrupted": float(corr)}


def activation_patching(model: HookedTransformer, groups: list[PromptGroup], clean: Clean) -> dict[str, Tensor]:
    """Noising (ABC activation into the clean run), relative change of the logit difference:
    ``resid`` [layer role] at :data:`ROLES`, ``heads`` [layer head] at every position."""
    def rel(sweep: Tensor, g: PromptGroup) -> Tensor:
        base = clean[g.template, g.order]
        return (sweep - base) / base

    def resid(g):
        pos = [g.positions[r] for r in ROLES]
        return rel(patch_sweep(model, "resid_pre", g.metric, g.clean, g.corrupted, direction="corrupted_to_clean",
                               positions=pos, last_position_only=True), g)

    def heads(g):
        return rel(patch_sweep(model, "head_all_pos", g.metric, g.clean, g.corrupted,
                               direction="corrupted_to_clean", last_position_only=True), g)
    return {"resid": over_groups(groups, resid), "heads": over_groups(groups, heads)}


def path_effects(model: HookedTransformer, groups: list[PromptGroup], clean: Clean, receivers,
                 sender_role: str | None) -> Tensor:
    """[layer head] relative change of the logit difference when each head alone is path-patched (ABC -> clean)
    to ``receivers`` ("logits" or (layer, head, "q"|"k"|"v") list), at the ``sender_role`` position (None: all)."""
    def one(g: PromptGroup) -> Tensor:
        base = clean[g.template, g.order]
        pos = None if sender_role is None else [g.positions[sender_role]]
        return (path_patch(model, g.metric, g.clean, g.corrupted, receivers, sender_positions=pos,
                           last_position_only=True) - base) / base
    return over_groups(groups, one)


@torch.inference_mode()
def attention_table(model: HookedTransformer, groups: list[PromptGroup]) -> dict[str, Tensor]:
    """[layer head] mean attention END->IO, END->S (S1 + S2), S2->S1, S2->S1+1 and S1+1->S1 on clean prompts."""
    pairs = {"end_io": ("end", ("io",)), "end_s": ("end", ("s1", "s2")), "s2_s1": ("s2", ("s1",)),
             "s2_s1+1": ("s2", ("s1+1",)), "s1+1_s1": ("s1+1", ("s1",))}
    names = [utils.get_act_name("pattern", la) for la in range(model.cfg.n_layers)]

    def one(g: PromptGroup) -> Tensor:
        _, cache = model.run_with_cache(g.clean.to(model.cfg.device), names_filter=lambda n: n in names)
        pat = torch.stack([cache[n] for n in names]).mean(1).cpu()  # [layer head dest src]
        return torch.stack([sum(pat[:, :, g.positions[d], g.positions[s]] for s in srcs) for d, srcs in pairs.values()])
    table = over_groups(groups, one)
    return dict(zip(pairs, table, strict=True))


@torch.inference_mode()
def copy_scores(model: HookedTransformer, name_ids: Tensor, top_k: int, heads=None) -> tuple[Tensor, Tensor]:
    """Copy and negative copy scores [layer head] (Wang et al. §3.1, appendix): each name's token embedding,
    plus the first MLP's output on it (for heads after that MLP), is passed through the head's OV circuit (after its layer norm) and
    unembedded; the score is the fraction of names whose own token is in the top ``top_k`` logits (for the
    negative score, of the negated OV output). Only ``heads`` (default: all) are scored; the others are NaN
    (with GPT-2's 50k-token vocabulary every head costs a full unembedding of every name)."""
    c = model.cfg
    ids = name_ids.to(c.device)
    embed = model.W_E[ids]  # [name d_model]
    resid = embed  # what heads after the first MLP read: the embedding plus that MLP's output on it
    if not c.attn_only:
        resid = embed + model.blocks[0].mlp(model.blocks[0].ln2(embed[None]))[0]
    pos, neg = torch.full((c.n_layers, c.n_heads), float("nan")), torch.full((c.n_layers, c.n_heads), float("nan"))
    final_norm = model.ln_final if c.normalization_type is not None else (lambda x: x)
    todo = [(la, h) for la in range(c.n_layers) for h in range(c.n_heads)] if heads is None else list(heads)
    for layer, head in todo:
        x = model.blocks[layer].ln1((embed if layer == 0 else resid)[None])[0]  # layer 0 reads the bare embedding
        out = x @ model.W_V[layer, head] @ model.W_O[layer, head]  # [name d_model]
        for sign, table in ((1.0, pos), (-1.0, neg)):
            logits = model.unembed(final_norm((sign * out)[None]))[0]
            top = logits.topk(top_k, dim=-1).indices
            table[layer, head] = (top == ids[:, None]).any(-1).float().mean().cpu()
    return pos, neg


def name_mover_rule(direct: Tensor, attn_io: Tensor, copy: Tensor, neg_copy: Tensor, cfg: IOIConfig
                    ) -> tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]:
    """(name movers, negative name movers) from [layer head] tables: the direct effect on the logits (relative),
    attention END -> IO, copy and negative copy scores (Wang et al. §3.1)."""
    attends = attn_io >= cfg.attention_threshold
    nm = _pick((direct <= -cfg.direct_threshold) & attends & (copy >= cfg.copy_threshold), set())
    nnm = _pick((direct >= cfg.direct_threshold) & attends & (neg_copy >= cfg.copy_threshold), set(nm))
    return nm, nnm


def induction_rule(found, attn_s1_next: Tensor, attn_s1: Tensor):
    """Split heads that act through the S-inhibition values: induction heads attend from S2 to S1+1 (the token
    after the earlier S), duplicate-token heads to S1 itself (Wang et al. §3.3)."""
    return (tuple(h for h in found if attn_s1_next[h] >= attn_s1[h]),
            tuple(h for h in found if attn_s1_next[h] < attn_s1[h]))


def _pick(mask: Tensor, taken: set) -> tuple[tuple[int, int], ...]:
    heads = [tuple(map(int, ix)) for ix in mask.nonzero()]
    return tuple(h for h in heads if h not in taken)


def discover(model: HookedTransformer, groups: list[PromptGroup], name_ids: Tensor, cfg: IOIConfig) -> dict:
    """The backwards search. Returns the circuit, every per-head table and the per-step path-patching maps."""
    clean = clean_metrics(model, groups)
    ld = logit_diffs(model, groups, clean)
    att = attention_table(model, groups)
    steps: dict[str, Tensor] = {"logits": path_effects(model, groups, clean, "logits", None)}
    direct = steps["logits"]
    # copy scores only where the rest of a name-mover rule already holds (each costs a full unembedding)
    eligible = (direct.abs() >= cfg.direct_threshold) & (att["end_io"] >= cfg.attention_threshold)
    candidates = [tuple(map(int, ix)) for ix in eligible.nonzero()]
    c = model.cfg
    cheap = 4 * c.d_model * c.d_vocab * len(name_ids) * c.n_layers * c.n_heads < 1e11  # FLOPs to score every head
    copy, neg_copy = copy_scores(model, name_ids, cfg.copy_top_k, None if cheap else candidates)
    classes: dict[str, tuple] = dict(zip(("name_mover", "negative_name_mover"),
                                         name_mover_rule(direct, att["end_io"], copy, neg_copy, cfg), strict=True))
    taken = set(classes["name_mover"]) | set(classes["negative_name_mover"])
    stopped = None
    for cls, step, receivers_of, kind, role in (("s_inhibition", "nm_queries", "name_mover", "q", "end"),
                                                ("induction", "s_inh_values", "s_inhibition", "v", "s2"),
                                                ("previous_token", "induction_keys", "induction", "k", "s1+1")):
        receivers = [(la, h, kind) for la, h in classes[receivers_of]]
        if not receivers:
            stopped = stopped or f"no {receivers_of.replace('_', ' ')} heads: the search stops before {step}"
            classes[cls] = ()
            if cls == "induction":
                classes["duplicate_token"] = ()
            continue
        steps[step] = path_effects(model, groups, clean, receivers, role)
        found = _pick(steps[step] <= -cfg.path_threshold, taken)
        if cls == "induction":
            classes["induction"], classes["duplicate_token"] = induction_rule(found, att["s2_s1+1"], att["s2_s1"])
        else:
            classes[cls] = found
        taken |= set(found)
    circuit = Circuit({c: classes[c] for c in CLASSES}, {c: CLASS_POSITIONS[c] for c in CLASSES})
    heads = []
    for la in range(model.cfg.n_layers):
        for h in range(model.cfg.n_heads):
            row = {"layer": la, "head": h, "name": f"{la}.{h}",
                   "class": next((c for c in CLASSES if (la, h) in classes[c]), ""),
                   "copy_score": float(copy[la, h]), "negative_copy_score": float(neg_copy[la, h]),
                   **{f"attn_{k}": float(v[la, h]) for k, v in att.items()},
                   **{f"path_{k}": float(v[la, h]) for k, v in steps.items()}}
            heads.append(row)
    return {"logit_diff": ld, "circuit": circuit, "heads": heads, "steps": steps, "stopped": stopped,
            "clean": clean}


@torch.inference_mode()
def scatter_points(model: HookedTransformer, groups: list[PromptGroup], head: tuple[int, int]) -> dict[str, np.ndarray]:
    """Per prompt, for one head (Wang et al. Fig. 3): attention END->IO and END->S (S1 + S2), and the projection of the
    head's END output onto the unembedding of IO and of S."""
    la, h = head
    names = [utils.get_act_name("pattern", la), utils.get_act_name("z", la)]
    out: dict[str, list] = {k: [] for k in ("attn_io", "attn_s", "proj_io", "proj_s")}
    for g in groups:
        _, cache = model.run_with_cache(g.clean.to(model.cfg.device), names_filter=lambda n: n in names)
        end = g.positions["end"]
        pat = cache[names[0]][:, h, end]  # [n src]
        o = cache[names[1]][:, end, h] @ model.W_O[la, h]  # [n d_model]
        out["attn_io"] += pat[:, g.positions["io"]].tolist()
        out["attn_s"] += (pat[:, g.positions["s1"]] + pat[:, g.positions["s2"]]).tolist()
        out["proj_io"] += (o * model.W_U[:, g.io.to(o.device)].T).sum(-1).tolist()
        out["proj_s"] += (o * model.W_U[:, g.s.to(o.device)].T).sum(-1).tolist()
    return {k: np.array(v) for k, v in out.items()}


def run_analysis(model: HookedTransformer, cfg: IOIConfig, paper_circuit: bool) -> dict:
    """Everything the IOI report shows: dataset, discovery, activation patching, and the validation of the
    discovered circuit (and of Wang et al.'s, when ``paper_circuit`` and the model is GPT-2-small-shaped)."""
    t0 = time.perf_counter()

    def stage(what: str) -> None:  # progress in the job's log
        print(f"[ioi {time.perf_counter() - t0:7.1f} s] {what}", flush=True)

    clean, abc = ioi_dataset(model.tokenizer, cfg)
    groups = group_prompts(clean, abc)
    name_ids = torch.tensor([single_token_id(model.tokenizer, " " + n) for n in VOCABULARIES[cfg.vocabulary][0]])
    stage(f"{len(clean.texts)} prompts in {len(groups)} template/order groups; path patching backwards from the logits")
    found = discover(model, groups, name_ids, cfg)
    stage(f"circuit: {found['circuit'].to_json()['roles']}; activation patching")
    patching = activation_patching(model, groups, found["clean"])
    for row in found["heads"]:
        row["act_patch_all_pos"] = float(patching["heads"][row["layer"], row["head"]])
    circuit: Circuit = found["circuit"]
    stage("faithfulness")
    ev = C.Evaluator(model, groups, ABLATION)
    validation = [{"circuit": "discovered", **C.faithfulness(ev, circuit, p)} for p in C.PROTOCOLS]
    summary = {"logit_diff": found["logit_diff"]["clean"], "corrupted_logit_diff": found["logit_diff"]["corrupted"],
               "n_prompts": len(clean.texts), "n_groups": len(groups), "stopped": found["stopped"],
               "discovered.n_heads": len(circuit.heads),
               "discovered.head_fraction": len(circuit.heads) / (model.cfg.n_layers * model.cfg.n_heads),
               "discovered.faithfulness": validation[0]["faithfulness"],
               "discovered.faithfulness_all_positions": validation[1]["faithfulness"],
               **{f"discovered.n_{c}": len(circuit.roles[c]) for c in CLASSES}}
    completeness, minimal = [], []
    if circuit.heads:
        stage("completeness and minimality")
        completeness = C.completeness(ev, circuit, "paper", cfg.n_random_k, cfg.greedy_k, cfg.seed)
        minimal = C.minimality(ev, circuit, "paper")
        summary["discovered.max_incompleteness"] = max(r["incompleteness"] for r in completeness)
        summary["discovered.min_minimality"] = min(r["minimality"] for r in minimal)
    paper = PAPER_CIRCUIT
    if paper_circuit and (model.cfg.n_layers, model.cfg.n_heads) == (12, 12):
        stage("faithfulness of the paper's circuit")
        rows = [{"circuit": "paper", **C.faithfulness(ev, paper, p)} for p in C.PROTOCOLS]
        validation += rows
        summary["paper_circuit.faithfulness"] = rows[0]["faithfulness"]
        summary["paper_circuit.faithfulness_all_positions"] = rows[1]["faithfulness"]
        # per class against Fig. 2; backup name movers are not searched here (they need the knock-out experiment
        # of §3.4), so they are not counted
        summary.update(C.overlap(circuit, PAPER_CIRCUIT, roles=CLASSES))
    direct = found["steps"]["logits"]
    nm = circuit.roles["name_mover"]
    focus = nm[0] if nm else tuple(int(i) for i in np.unravel_index(int(direct.argmin()), tuple(direct.shape)))
    return {"summary": summary, "heads": found["heads"], "circuit": circuit, "paper": paper,
            "steps": found["steps"], "patching": patching, "validation": validation,
            "completeness": completeness, "minimality": minimal, "scatter_head": focus,
            "scatter": scatter_points(model, groups, focus),
            "examples": [{"text": t, "corrupted": a, "template": tm, "order": o} for t, a, tm, o in
                         list(zip(clean.texts, abc.texts, clean.templates, clean.orders, strict=True))[:8]]}
