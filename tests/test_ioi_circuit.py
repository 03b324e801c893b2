"""IOI circuit discovery and validation (Wang et al. 2022 §3-4) against brute force and hand-built models."""

import json
from dataclasses import dataclass

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig, utils

from conftest import scaled_random_model
from mechrepro.tasks.ioi import IOIConfig
from mechrepro.tasks.ioi_circuit import ABLATION, copy_scores, discover, induction_rule, name_mover_rule
from mechrepro.techniques import circuits as C
from mechrepro.techniques.ablation import ablate_masks
from mechrepro.techniques.path_patching import MLP

CFG = IOIConfig(model="x", n_prompts=30, vocabulary="paper", exclude_templates=(), direct_threshold=0.05,
                path_threshold=0.05, attention_threshold=0.2, copy_threshold=0.5, copy_top_k=1, n_random_k=4,
                greedy_k=2, seed=0)


def _model(n_layers=3, n_heads=3):
    cfg = HookedTransformerConfig(n_layers=n_layers, d_model=16, n_heads=n_heads, d_head=4, d_mlp=24, n_ctx=12,
                                  d_vocab=23, act_fn="gelu", normalization_type="LN", seed=3)
    return scaled_random_model(cfg)


@dataclass
class Group:  # what the validation code needs of a prompt group
    clean: torch.Tensor
    corrupted: torch.Tensor
    positions: dict
    io: torch.Tensor
    s: torch.Tensor
    template: str = ""
    order: str = ""

    def metric(self, logits):
        rows = torch.arange(len(self.io))
        return (logits[rows, -1, self.io] - logits[rows, -1, self.s]).mean()


def _groups(seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for n, length in ((3, 7), (2, 9)):  # two lengths: validation is per group, weighted by prompts
        out.append(Group(torch.randint(0, 23, (n, length), generator=g), torch.randint(0, 23, (n, length), generator=g),
                         {"io": 1, "s1": 2, "s1+1": 3, "s2": length - 3, "end": length - 1},
                         torch.randint(0, 23, (n,), generator=g), torch.randint(0, 23, (n,), generator=g),
                         f"t{length}", "ABBA"))
    return out


def _brute(model, group, keep, means):
    """Metric with head outputs replaced by ``means`` wherever ``keep`` [layer pos head] is False, hook by hook."""
    def hook(z, hook):
        la = hook.layer()
        k = keep[la][None, :, :, None]
        return torch.where(k, z, means[la][None])
    hooks = [(utils.get_act_name("z", la), hook) for la in range(model.cfg.n_layers)]
    with torch.no_grad():
        return float(group.metric(model.run_with_hooks(group.clean, fwd_hooks=hooks)))


def _means(model, group):
    _, cache = model.run_with_cache(group.corrupted)
    return torch.stack([cache["z", la].mean(0) for la in range(model.cfg.n_layers)])


def test_ablate_masks_equals_hooks_by_brute_force():
    model, group = _model(), _groups()[0]
    g = torch.Generator().manual_seed(1)
    masks = torch.rand((4, 3, 7, 3), generator=g) < 0.4
    masks[0] = False  # the clean run
    means = _means(model, group)
    ours = ablate_masks(model, group.clean, masks, group.metric, replacement=means, memory_budget=30_000)
    for m, o in zip(masks, ours, strict=True):
        assert float(o) == pytest.approx(_brute(model, group, ~m, means), abs=1e-4)
    with pytest.raises(ValueError, match="masks must be"):
        ablate_masks(model, group.clean, masks[:, :2], group.metric)


def _weighted(model, groups, keep_fn):
    n = sum(len(g.io) for g in groups)
    return sum(_brute(model, g, keep_fn(g), _means(model, g)) * len(g.io) / n for g in groups)


def test_faithfulness_under_both_protocols_equals_brute_force():
    model, groups = _model(), _groups()
    ev = C.Evaluator(model, groups, ABLATION)
    full = _weighted(model, groups, lambda g: torch.ones(3, g.clean.shape[1], 3, dtype=torch.bool))
    assert ev.full == pytest.approx(full, abs=1e-4)
    circuit = C.Circuit({"name_mover": ((2, 1),), "s_inhibition": ((1, 0), (1, 2))},
                        {"name_mover": "end", "s_inhibition": "s2"})
    for protocol in C.PROTOCOLS:
        def keep(g, protocol=protocol):
            k = torch.zeros(3, g.clean.shape[1], 3, dtype=torch.bool)
            for (la, h), role in (((2, 1), "end"), ((1, 0), "s2"), ((1, 2), "s2")):
                if protocol == "all_positions":
                    k[la, :, h] = True
                else:
                    k[la, g.positions[role], h] = True
            return k
        row = C.faithfulness(ev, circuit, protocol)
        assert row["F_C"] == pytest.approx(_weighted(model, groups, keep), abs=1e-4)
        assert row["faithfulness"] == pytest.approx(row["F_C"] / full, rel=1e-4)
        assert row["protocol_text"] == ABLATION.protocols[protocol]
    everything = C.Circuit({"all": tuple((la, h) for la in range(3) for h in range(3))}, {"all": "end"})
    assert C.faithfulness(ev, everything, "all_positions")["faithfulness"] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="protocol"):
        C.faithfulness(ev, circuit, "some")


def test_completeness_and_minimality_by_brute_force():
    model, groups = _model(), _groups()
    ev = C.Evaluator(model, groups, ABLATION)
    circuit = C.Circuit({"a": ((0, 1), (2, 1)), "b": ((1, 0),)}, {"a": "end", "b": "s2"})
    rows = C.completeness(ev, circuit, "paper", n_random=3, greedy_k=2, seed=0)
    empty = rows[0]
    assert empty["kind"] == "empty" and empty["F_M_minus_K"] == pytest.approx(ev.full, abs=1e-4)

    def f_c(removed):
        return ev.metric(ev.circuit(circuit, "paper", removed))

    def f_m(removed):
        return ev.metric(ev.without(removed))
    greedy = [r for r in rows if r["kind"] == "greedy"]
    assert [r["size"] for r in greedy] == [1, 2]
    singles = {h: abs(f_c((h,)) - f_m((h,))) / abs(ev.full) for h in circuit.heads}
    assert greedy[0]["incompleteness"] == pytest.approx(max(singles.values()), abs=1e-5)
    assert [(r["kind"], r["role"]) for r in rows[:3]] == [("empty", ""), ("role", "a"), ("role", "b")]
    for r in C.minimality(ev, circuit, "paper"):
        v = C.parse(r["part"])
        assert r["role"] == circuit.role_of(v)
        alone = abs(f_c((v,)) - f_c(())) / abs(ev.full)
        assert r["minimality"] >= alone - 1e-6  # the reported K is the better of K = {} and the class's others


def test_circuit_check_names_parts_outside_the_model():
    with pytest.raises(ValueError, match="9.9"):
        C.Circuit({"name_mover": ((9, 9),)}, {"name_mover": "end"}).check(_model())
    with pytest.raises(ValueError, match=r"2\.3 \(a\) is outside this model \(3 layers x 3 heads\)"):
        C.Circuit({"a": ((2, 3),)}, {"a": "end"}).check(_model())
    with pytest.raises(ValueError, match="MLP 3 .* outside this model"):
        C.Circuit({"a": ((3, MLP),)}, {"a": "end"}).check(_model())
    cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_heads=2, d_head=4, n_ctx=4, d_vocab=8, attn_only=True)
    with pytest.raises(ValueError, match="MLP 0 .* attention-only"):
        C.Circuit({"a": ((0, MLP),)}, {"a": "end"}).check(HookedTransformer(cfg, move_to_device=False))
    with pytest.raises(ValueError, match="'b' has no position"):
        C.Circuit({"a": ((0, 1),), "b": ((1, 1),)}, {"a": "end"}).check(_model())
    with pytest.raises(ValueError, match="not a part"):
        C.Circuit({"a": ((0, "attn"),)}, {"a": "end"})
    with pytest.raises(ValueError, match="not a part"):
        C.Circuit({"a": ((-1, 0),)}, {"a": "end"})
    model, groups = _model(), _groups()
    ev = C.Evaluator(model, groups, ABLATION)  # Wang et al. never ablate MLPs: an MLP cannot be left out here
    with pytest.raises(ValueError, match="keeps every MLP"):
        ev.circuit(C.Circuit({"a": ((0, MLP),)}, {"a": "end"}), "paper")
    with pytest.raises(ValueError, match="'nowhere'"):  # a position the prompts do not mark
        ev.metric(ev.circuit(C.Circuit({"a": ((0, 1),)}, {"a": "nowhere"}), "paper"))


def test_circuit_parts_roles_and_json():
    c = C.Circuit({"end": [(1, MLP), (1, 0), [0, 2]], "yy": ((0, MLP), (1, MLP))}, {"end": "end", "yy": "yy"},
                  edges=[[(0, 2), (1, MLP)], ["a", 1]])
    assert c.parts == [(0, 2), (0, MLP), (1, 0), (1, MLP)]  # once each, layer by layer, heads before the MLP
    assert c.heads == [(0, 2), (1, 0)] and c.mlps == [(0, MLP), (1, MLP)]
    assert c.role_of((1, MLP)) == "end" and c.role_of((0, MLP)) == "yy"  # the first role that plays it
    with pytest.raises(ValueError, match="not in this circuit"):
        c.role_of((5, 5))
    j = c.to_json()
    assert j["roles"] == {"end": ["MLP 1", "1.0", "0.2"], "yy": ["MLP 0", "MLP 1"]}
    assert j["edges"] == [[[0, 2], [1, "mlp"]], ["a", 1]]
    back = C.Circuit.from_json(json.loads(json.dumps(j)))
    assert back == c and back.edges == (((0, 2), (1, MLP)), ("a", 1))
    assert C.Circuit.from_json({"roles": {"a": ["3.2"]}}) == C.Circuit({"a": ((3, 2),)}, {})
    with pytest.raises(ValueError, match="not a circuit part"):
        C.parse("head 3")


def test_copy_scores_of_hand_built_copying_and_anti_copying_heads():
    """One attention-only layer, embeddings and unembeddings the identity: a head whose OV circuit is the
    identity copies every name (copy score 1, negative copy score 0); a head with OV = -identity the reverse."""
    cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_heads=2, d_head=8, n_ctx=4, d_vocab=8, attn_only=True,
                                  normalization_type=None, act_fn=None)
    m = HookedTransformer(cfg, move_to_device=False).eval()
    with torch.no_grad():
        m.W_E.copy_(torch.eye(8))
        m.W_U.copy_(torch.eye(8))
        m.blocks[0].attn.W_V.copy_(torch.eye(8).expand(2, 8, 8))
        m.blocks[0].attn.W_O.copy_(torch.stack([torch.eye(8), -torch.eye(8)]))
        m.blocks[0].attn.b_O.zero_()
        m.unembed.b_U.zero_()
        m.blocks[0].attn.b_V.zero_()
    pos, neg = copy_scores(m, torch.arange(8), top_k=1)
    assert pos[0].tolist() == [1.0, 0.0] and neg[0].tolist() == [0.0, 1.0]


def test_class_rules_on_given_tables():
    direct = torch.tensor([[0.0, -0.10, -0.10], [0.20, 0.10, -0.01]])
    attn_io = torch.tensor([[0.5, 0.5, 0.1], [0.5, 0.3, 0.9]])
    copy = torch.tensor([[0.9, 0.9, 0.9], [0.0, 0.0, 0.9]])
    neg = torch.tensor([[0.0, 0.0, 0.0], [0.9, 0.1, 0.0]])
    nm, nnm = name_mover_rule(direct, attn_io, copy, neg, CFG)
    assert nm == ((0, 1),)  # (0, 2) does not attend to IO; (1, 2)'s effect is below the threshold
    assert nnm == ((1, 0),)  # (1, 1) has no negative copy score
    ind, dup = induction_rule(((0, 0), (0, 1)), torch.tensor([[0.6, 0.1]]), torch.tensor([[0.2, 0.5]]))
    assert ind == ((0, 0),) and dup == ((0, 1),)


def test_class_overlap_precision_and_recall():
    ours = C.Circuit({"name_mover": ((9, 9), (1, 1)), "s_inhibition": ()}, {})
    paper = C.Circuit({"name_mover": ((9, 9), (10, 0), (9, 6)), "s_inhibition": ((7, 3),),
                       "backup_name_mover": ((1, 1),)}, {})
    m = C.overlap(ours, paper, roles=["name_mover", "s_inhibition"])
    assert m["precision.name_mover"] == 0.5 and m["recall.name_mover"] == pytest.approx(1 / 3)
    assert m["recall.s_inhibition"] == 0.0 and m["precision.s_inhibition"] is None  # undefined, not a number
    # over the roles compared (backup name movers left out): 1 of our 2 heads is one of the paper's 4
    assert m["precision.heads"] == 0.5 and m["recall.heads"] == 0.25
    assert m["precision.mlps"] is None and m["recall.mlps"] is None
    # every role: (1, 1) now matches the paper's backup name mover
    assert C.overlap(ours, paper)["precision.heads"] == 1.0 and C.overlap(ours, paper)["recall.heads"] == 0.4


def test_overlap_of_heads_and_mlps_by_hand():
    ours = C.Circuit({"end": ((5, 5), (6, 1), (8, MLP), (3, 3)), "yy": ((0, MLP), (0, 1))}, {})
    ref = C.Circuit({"end": ((5, 5), (6, 9), (8, MLP), (9, MLP)), "yy": ((0, MLP), (1, MLP), (0, 3))}, {})
    m = C.overlap(ours, ref, roles=["end", "yy"])
    # heads: ours {5.5, 6.1, 3.3, 0.1}, theirs {5.5, 6.9, 0.3}: one shared
    assert m["precision.heads"] == 0.25 and m["recall.heads"] == pytest.approx(1 / 3)
    # MLPs: ours {8, 0}, theirs {8, 9, 0, 1}: two shared
    assert m["precision.mlps"] == 1.0 and m["recall.mlps"] == 0.5
    assert m["precision.end"] == 0.5 and m["recall.end"] == 0.5  # 5.5 and MLP 8 of our 4 and of their 4
    assert m["precision.end_heads"] == pytest.approx(1 / 3) and m["recall.end_heads"] == 0.5
    assert m["precision.end_mlps"] == 1.0 and m["recall.end_mlps"] == 0.5
    assert m["precision.yy"] == 0.5 and m["recall.yy"] == pytest.approx(1 / 3)
    assert m["precision.yy_heads"] == 0.0 and m["recall.yy_heads"] == 0.0
    assert m["precision.yy_mlps"] == 1.0 and m["recall.yy_mlps"] == 0.5
    empty = C.overlap(C.Circuit({}, {}), ref, roles=["end"])
    assert empty["precision.end"] is None and empty["recall.end"] == 0.0
    assert set(C.overlap(ours, ref)) == {"precision.heads", "recall.heads", "precision.mlps", "recall.mlps"}


def test_discover_runs_the_backwards_search_and_reports_where_it_stops():
    model, groups = _model(), _groups()
    strict = IOIConfig(**{**CFG.__dict__, "copy_threshold": 0.99, "attention_threshold": 0.99})
    out = discover(model, groups, torch.arange(10), strict)
    assert out["stopped"].startswith("no name mover heads")
    assert len(out["heads"]) == 9 and set(out["steps"]) == {"logits"}
    # with every head eligible by attention and copying, the direct effects alone decide
    loose = IOIConfig(**{**CFG.__dict__, "copy_threshold": 1e-9, "attention_threshold": 1e-9, "copy_top_k": 23})
    out = discover(model, groups, torch.arange(10), loose)
    direct = out["steps"]["logits"]
    assert set(out["circuit"].roles["name_mover"]) == {tuple(map(int, ix)) for ix in (direct <= -0.05).nonzero()}
    if out["circuit"].roles["name_mover"]:
        assert "nm_queries" in out["steps"]
