"""IOI and Greater-Than as edge-discovery tasks: their prompts and per-prompt metrics as :class:`Pairs`.

The metric is each paper's own: IOI's logit difference logit(IO) - logit(S) at END (Wang et al. 2022), Greater-Than's
probability difference P(years > YY) - P(years <= YY) (Hanna et al. 2023); the corruptions are the papers' (ABC
names, the "01" start year). Hanna et al. 2024 (*Have Faith in Faithfulness*) run EAP-IG on exactly these two tasks.
"""

from __future__ import annotations

import torch
from transformer_lens import HookedTransformer

from mechrepro.tasks.greater_than import GreaterThanConfig, _prob_diff, year_dataset
from mechrepro.tasks.greater_than_circuit import PAPER_CIRCUIT as GT_CIRCUIT
from mechrepro.tasks.ioi import PAPER_CIRCUIT as IOI_CIRCUIT
from mechrepro.tasks.ioi import IOIConfig, group_prompts, ioi_dataset
from mechrepro.techniques.circuits import Circuit, overlap
from mechrepro.techniques.discovery import Discovery, DiscoveryConfig, discover
from mechrepro.techniques.edges import Pairs
from mechrepro.techniques.path_patching import MLP

TASKS = ("ioi", "greater_than")


def ioi_pairs(model: HookedTransformer, cfg: IOIConfig) -> list[Pairs]:
    """Every prompt in one batch, right-padded to the longest template: attention is causal, so no real position
    sees a pad, and each prompt's metric is read at its own END. (One batch instead of one per template: the
    per-call cost of many small batches dominated on a CPU.) Metric: each prompt's logit difference at END."""
    clean, abc = ioi_dataset(model.tokenizer, cfg)
    groups = group_prompts(clean, abc)
    width = max(g.clean.shape[1] for g in groups)
    pad = int(groups[0].clean[0, -1])  # any token: nothing real attends to it

    def padded(t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=pad)
    end = torch.cat([torch.full((len(g.io),), g.positions["end"]) for g in groups])
    io, s = torch.cat([g.io for g in groups]), torch.cat([g.s for g in groups])

    def metric(logits):  # logits [prompt 1 vocab] at each prompt's END (answer_pos)
        rows = torch.arange(len(io), device=logits.device)
        return logits[rows, -1, io.to(logits.device)] - logits[rows, -1, s.to(logits.device)]
    return [Pairs(torch.cat([padded(g.clean) for g in groups]), torch.cat([padded(g.corrupted) for g in groups]),
                  metric, answer_pos=end)]


def greater_than_pairs(model: HookedTransformer, cfg: GreaterThanConfig) -> list[Pairs]:
    """The year prompts and their 01 counterparts; metric: each prompt's probability difference."""
    ds = year_dataset(model.tokenizer, cfg)

    def metric(logits):  # logits [prompt 1 vocab] at the last position (answer_pos)
        return _prob_diff(ds.probs(logits), ds.start_yy.to(logits.device))
    return [Pairs(ds.clean, ds.corrupted, metric, answer_pos=torch.full((len(ds.clean),), ds.clean.shape[1] - 1))]


def run(model: HookedTransformer, task: str, section: dict, discovery: dict) -> Discovery:
    """Edge discovery on one paper's task (``section``: its config section; ``discovery``: the shared one)."""
    if task not in TASKS:
        raise ValueError(f"unknown edge-discovery task {task!r}; known: {', '.join(TASKS)}")
    dcfg = DiscoveryConfig.from_config(discovery)  # checked before any compute
    section = {k: v for k, v in section.items() if k != "paper_circuit"}
    if task == "ioi":
        sets = ioi_pairs(model, IOIConfig.from_config(section))
    else:
        sets = greater_than_pairs(model, GreaterThanConfig.from_config(section))
    found = discover(model, sets, dcfg, log=lambda s: print(f"[{task}] {s}", flush=True))
    if (model.cfg.n_layers, model.cfg.n_heads) == (12, 12):  # the paper's circuit names GPT-2 small's heads
        found.summary.update(paper_overlap(found, task))
    return found


def paper_overlap(found: Discovery, task: str) -> dict:
    """Precision and recall of the discovered circuit's heads and MLPs against the paper's circuit (Wang et al.
    2022 Fig. 2; Hanna et al. 2023 Fig. 5), keys ``overlap.precision.heads`` ... (None where a set is empty)."""
    paper = IOI_CIRCUIT if task == "ioi" else GT_CIRCUIT
    parts = tuple((n.layer, MLP if n.kind == "mlp" else n.head) for n in found.circuit_nodes())
    ours = Circuit({"found": parts}, {"found": "end"})
    reference = Circuit({"all": tuple(paper.parts)}, {"all": "end"})
    return {f"overlap.{k}": v for k, v in overlap(ours, reference, roles=None).items()
            if k.split(".")[1] in ("heads", "mlps")} | {"overlap.paper_parts": len(paper.parts)}

