"""Greater-Than (Hanna et al. 2023): the dataset with the real GPT-2 tokenizer and the toy one, the metrics against
hand-computed values, the heatmap, and the circuit evaluation against brute-force hooks."""

import pytest
import torch
from transformer_lens import HookedTransformerConfig, utils

from conftest import scaled_random_model
from mechrepro.data.tokenizer import build_tokenizer
from mechrepro.models.load import gpt2_tokenizer
from mechrepro.tasks import greater_than as G
from mechrepro.tasks import greater_than_circuit as GC
from mechrepro.techniques import circuits as C
from mechrepro.techniques.ablation import ablate_masks
from mechrepro.techniques.path_patching import MLP


def _cfg(**kw):
    base = {"model": "x", "n_prompts": 97, "vocabulary": "paper", "direct_threshold": 0.05, "path_threshold": 0.05,
            "n_random_k": 3, "greedy_k": 2, "seed": 0}
    return G.GreaterThanConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def gpt2():
    return gpt2_tokenizer()


@pytest.fixture(scope="module")
def toy_tok():
    return build_tokenizer()


def test_every_paper_noun_and_year_is_tokenized_as_the_paper_needs(gpt2):
    ds = G.year_dataset(gpt2, _cfg(n_prompts=194))
    assert len(G.PAPER_NOUNS) == 120 and set(ds.nouns) <= set(G.PAPER_NOUNS)
    assert ds.clean.shape == ds.corrupted.shape == (194, 13)
    assert ds.positions == {"noun": 2, "xx1": 7, "yy": 8, "end": 12}
    for i in range(0, 194, 17):
        pieces = gpt2.convert_ids_to_tokens(ds.clean[i].tolist())
        yy = int(ds.start_yy[i])
        assert pieces[8] == f"{yy:02d}" and pieces[7] == pieces[12]  # XX YY ... XX
        assert ds.texts[i].startswith(f"The {ds.nouns[i]} lasted from the year ") and ds.texts[i].endswith(
            f"{yy:02d} to the year {pieces[12][1:]}")
        assert gpt2.convert_ids_to_tokens(ds.corrupted[i].tolist())[8] == "01"
        differ = (ds.clean[i] != ds.corrupted[i]).nonzero().flatten().tolist()
        assert differ == [8]  # the 01 dataset changes YY and nothing else
    # balanced: every start year 02..98 exactly twice
    assert torch.bincount(ds.start_yy, minlength=100)[2:99].tolist() == [2] * 97
    assert gpt2.convert_ids_to_tokens(ds.yy_ids.tolist()) == [f"{y:02d}" for y in range(100)]


def test_toy_vocabulary_and_bad_nouns(toy_tok, gpt2, monkeypatch):
    ds = G.year_dataset(toy_tok, _cfg(vocabulary="toy", n_prompts=10))
    assert ds.positions["yy"] == 8 and ds.clean.shape == (10, 13)
    with pytest.raises(ValueError, match="'abduction'"):  # the toy tokenizer does not know the paper's nouns
        G.year_dataset(toy_tok, _cfg(n_prompts=10))
    monkeypatch.setitem(G.NOUNS, "paper", (*G.PAPER_NOUNS, "pterodactylism"))
    with pytest.raises(ValueError, match="pterodactylism"):
        G.year_dataset(gpt2, _cfg(n_prompts=10))
    with pytest.raises(ValueError, match="vocabulary"):
        _cfg(vocabulary="french")
    with pytest.raises(ValueError, match="direct_threshold"):
        _cfg(direct_threshold=1.5)
    with pytest.raises(ValueError, match="greater_than.greedy_k"):
        _cfg(greedy_k=0)


def test_probability_difference_and_cutoff_sharpness_by_hand():
    # Vocabulary of 103 tokens; the 100 year tokens are ids 3..102. Start year YY = 50.
    yy_ids = torch.arange(3, 103)
    p = torch.zeros(103)
    p[3 + 51] = 0.4  # year 51: later
    p[3 + 49] = 0.1  # year 49: earlier
    p[3 + 50] = 0.2  # year 50 itself counts as not later
    p[0] = 0.3  # a non-year token
    logits = p.clamp_min(1e-30).log()[None]
    start = torch.tensor([50])
    assert G.prob_diff(logits, start, yy_ids).item() == pytest.approx(0.4 - 0.1 - 0.2, abs=1e-6)
    probs = G.year_probs(logits, yy_ids)
    assert G.cutoff_sharpness(probs, start).item() == pytest.approx(0.4 - 0.1, abs=1e-6)
    with pytest.raises(ValueError, match="not finite"):
        G.prob_diff(torch.full((1, 103), float("nan")), start, yy_ids)


def test_heatmap_rows_are_means_per_start_year():
    values = torch.arange(4 * 100, dtype=torch.float).view(4, 100)
    start = torch.tensor([2, 2, 50, 98])
    m = G.heatmap(values, start)
    assert m.shape == (97, 100)
    torch.testing.assert_close(m[0], values[:2].mean(0))
    torch.testing.assert_close(m[48], values[2])
    torch.testing.assert_close(m[96], values[3])
    assert torch.isnan(m[1]).all()  # YY = 03 has no prompt


def test_later_fraction_reads_the_triangle():
    later = torch.tensor([[1.0 if y > yy else -1.0 for y in range(100)] for yy in G.START_YYS])
    assert GC.later_fraction(later) == 1.0
    assert GC.later_fraction(-later) == 0.0
    half = later.clone()
    half[::2] *= -1  # every other start year reversed
    assert GC.later_fraction(half) == pytest.approx(48 / 97)


def _model(d_vocab):
    cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=16, d_vocab=d_vocab,
                                  act_fn="gelu", normalization_type="LN", seed=2)
    return scaled_random_model(cfg)


def _brute_probs(model, ds, keep_heads, keep_mlps):
    """The circuit's year probabilities with plain hooks: outputs outside the keep-masks from the 01 run."""
    _, corr = model.run_with_cache(ds.corrupted)

    def hook(act, hook):
        la = hook.layer()
        if hook.name.endswith("hook_z"):
            return torch.where(keep_heads[la][None, :, :, None], act, corr[hook.name])
        return torch.where(keep_mlps[la][None, :, None], act, corr[hook.name])
    names = [utils.get_act_name(a, la) for la in range(model.cfg.n_layers) for a in ("z", "mlp_out")]
    return ds.probs(model.run_with_hooks(ds.clean, fwd_hooks=[(n, hook) for n in names]))


def _circuit():
    return C.Circuit({"end": ((1, 0), (1, MLP)), "yy": ((0, 1), (0, MLP))}, GC.POSITIONS)


def test_circuit_evaluation_equals_brute_force_and_its_limits(toy_tok):
    ds = G.year_dataset(toy_tok, _cfg(vocabulary="toy", n_prompts=12))
    model = _model(len(toy_tok))
    circuit = _circuit()
    ev = C.Evaluator(model, [ds], GC.ABLATION)
    keeps = {"model": ev.without(()), "empty": ev.circuit(C.Circuit({}, {}), "paper"),
             "c": ev.circuit(circuit, "paper"), "c_all": ev.circuit(circuit, "all_positions")}
    ours = dict(zip(keeps, ev.outputs(list(keeps.values()), ds.probs)[0], strict=True))
    n_pos = ds.clean.shape[1]
    with torch.no_grad():
        torch.testing.assert_close(ours["model"], ds.probs(model(ds.clean)), atol=1e-5, rtol=1e-4)
        # nothing kept: END's residual stream is the 01 run's exactly (END's own token is the same)
        torch.testing.assert_close(ours["empty"], ds.probs(model(ds.corrupted)), atol=1e-5, rtol=1e-4)
        for key, protocol in (("c", "paper"), ("c_all", "all_positions")):
            heads, mlps = C.keep_masks(model, circuit, ds.positions, n_pos, protocol)
            torch.testing.assert_close(ours[key], _brute_probs(model, ds, heads, mlps), atol=1e-5, rtol=1e-4)
    heads, mlps = C.keep_masks(model, circuit, ds.positions, n_pos, "paper")
    assert heads.sum() == 2 and mlps.sum() == 2 and heads[1, ds.positions["end"], 0] and mlps[0, ds.positions["yy"]]
    row = C.faithfulness(ev, circuit, "paper")
    assert row["F_C"] == pytest.approx(float(G._prob_diff(ours["c"], ds.start_yy).mean()), abs=1e-6)
    assert row["F_M"] == pytest.approx(float(G._prob_diff(ours["model"], ds.start_yy).mean()), abs=1e-6)
    assert row["protocol_text"] == GC.ABLATION.protocols["paper"] and (row["n_heads"], row["n_mlps"]) == (2, 2)
    with pytest.raises(ValueError, match="outside this model"):
        C.keep_masks(model, C.Circuit({"end": ((5, 0),)}, GC.POSITIONS), ds.positions, n_pos, "paper")
    with pytest.raises(ValueError, match="MLP 2 .* outside this model"):
        ev.circuit(C.Circuit({"yy": ((2, MLP),)}, GC.POSITIONS), "paper")
    # a part in two roles (an MLP at END and at YY) is kept at both positions, and removing it removes both
    both = C.Circuit({"end": ((0, MLP),), "yy": ((0, MLP),)}, GC.POSITIONS)
    _, mlps = C.keep_masks(model, both, ds.positions, n_pos, "paper")
    assert mlps.nonzero().tolist() == sorted([[0, ds.positions["yy"]], [0, ds.positions["end"]]])
    assert not C.keep_masks(model, both, ds.positions, n_pos, "paper", removed=[(0, MLP)]).mlps.any()


def test_completeness_and_minimality_of_a_greater_than_circuit_by_brute_force(toy_tok):
    """Wang et al.'s completeness and minimality, run on a Greater-Than circuit of heads and MLPs with outputs
    from the 01 prompts, against plain hooks."""
    ds = G.year_dataset(toy_tok, _cfg(vocabulary="toy", n_prompts=12))
    model = _model(len(toy_tok))
    circuit = _circuit()
    ev = C.Evaluator(model, [ds], GC.ABLATION)
    n_pos = ds.clean.shape[1]

    def brute(removed, whole_model=False) -> float:
        heads = torch.full((2, n_pos, 2), whole_model)
        mlps = torch.full((2, n_pos), whole_model)
        for role, parts in circuit.roles.items():
            for la, what in parts:
                at = slice(None) if whole_model else ds.positions[role]
                keep = (la, what) not in removed
                if what == MLP:
                    mlps[la, at] = keep
                else:
                    heads[la, at, what] = keep
        with torch.no_grad():
            return float(G._prob_diff(_brute_probs(model, ds, heads, mlps), ds.start_yy).mean())

    full = brute((), whole_model=True)
    assert ev.full == pytest.approx(full, abs=1e-6)
    rows = C.completeness(ev, circuit, "paper", n_random=2, greedy_k=2, seed=0)
    assert [(r["kind"], r["role"]) for r in rows[:3]] == [("empty", ""), ("role", "end"), ("role", "yy")]
    assert [r["kind"] for r in rows[3:]] == ["random", "random", "greedy", "greedy"]
    assert rows[1]["K"] == "1.0, MLP 1" and [r["size"] for r in rows[-2:]] == [1, 2]
    for r in rows:
        k = [C.parse(x) for x in r["K"].split(", ")] if r["K"] else []
        assert r["F_C_minus_K"] == pytest.approx(brute(k), abs=1e-6)
        assert r["F_M_minus_K"] == pytest.approx(brute(k, whole_model=True), abs=1e-6)
        assert r["incompleteness"] == pytest.approx(abs(r["F_C_minus_K"] - r["F_M_minus_K"]) / abs(full), rel=1e-6)
    singles = {p: abs(brute([p]) - brute([p], whole_model=True)) / abs(full) for p in circuit.parts}
    assert rows[-2]["incompleteness"] == pytest.approx(max(singles.values()), abs=1e-4)
    mini = C.minimality(ev, circuit, "paper")
    assert [(r["part"], r["role"]) for r in mini] == [("0.1", "yy"), ("MLP 0", "yy"), ("1.0", "end"),
                                                     ("MLP 1", "end")]
    for r in mini:
        v = C.parse(r["part"])
        k = [C.parse(x) for x in r["K"].split(", ")] if r["K"] else []
        assert set(k) <= set(circuit.roles[r["role"]]) - {v}  # K: nothing, or the other part of v's role
        assert r["minimality"] == pytest.approx(abs(brute(k + [v]) - brute(k)) / abs(full), abs=1e-4)
        assert r["minimality"] >= abs(brute([v]) - brute([])) / abs(full) - 1e-4  # the better of the two K


def test_ablate_masks_with_mlps_and_per_prompt_values_equals_hooks(toy_tok):
    ds = G.year_dataset(toy_tok, _cfg(vocabulary="toy", n_prompts=6))
    model = _model(len(toy_tok))
    g = torch.Generator().manual_seed(0)
    n_pos = ds.clean.shape[1]
    head_masks = torch.rand(3, 2, n_pos, 2, generator=g) < 0.5
    mlp_masks = torch.rand(3, 2, n_pos, generator=g) < 0.5
    _, corr = model.run_with_cache(ds.corrupted)
    z = torch.stack([corr[utils.get_act_name("z", la)] for la in range(2)], dim=1)
    mlp = torch.stack([corr[utils.get_act_name("mlp_out", la)] for la in range(2)], dim=1)
    ours = ablate_masks(model, ds.clean, head_masks, ds.probs, replacement=z, mlp_masks=mlp_masks,
                        mlp_replacement=mlp, memory_budget=20_000)
    for i in range(3):
        want = _brute_probs(model, ds, ~head_masks[i], ~mlp_masks[i])
        torch.testing.assert_close(ours[i], want, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="mlp_masks must be"):
        ablate_masks(model, ds.clean, head_masks, ds.probs, mlp_masks=mlp_masks[:, :1])
    with pytest.raises(ValueError, match="values for 5 prompts"):
        ablate_masks(model, ds.clean, head_masks, ds.probs, replacement=z[:5])


def test_discover_follows_its_tables(toy_tok):
    ds = G.year_dataset(toy_tok, _cfg(vocabulary="toy", n_prompts=20))
    model = _model(len(toy_tok))
    # a random model's effects are small: thresholds low enough that every kind of step runs
    cfg = _cfg(vocabulary="toy", n_prompts=20, direct_threshold=1e-4, path_threshold=1e-4)
    found = GC.discover(model, ds, cfg)
    steps, circuit = found["steps"], found["circuit"]
    assert list(steps) == ["logits", "end_mlps_0_1", "end_heads_kv", "yy_mlps_0"]
    assert circuit.roles["end"] and circuit.roles["yy"]
    assert steps["logits"].shape == (2, 3)
    direct = set(GC._components(steps["logits"], cfg.direct_threshold))
    assert direct <= set(circuit.roles["end"])
    for key, table in steps.items():  # every component that clears a later step's threshold is in the circuit
        if key != "logits":
            role = "yy" if key.startswith(("end_heads", "yy")) else "end"
            assert set(GC._components(table, cfg.path_threshold)) <= set(circuit.roles[role])
    assert steps["end_heads_kv"][1:].abs().max() == 0  # layer-1 senders cannot reach a layer-1 head's k/v
    assert steps["end_mlps_0_1"][1, 2] == 0  # MLP 1 does not reach MLP 0 or itself


def test_overlap_with_the_paper_circuit():
    paper = GC.PAPER_CIRCUIT
    same = C.overlap(paper, paper, roles=GC.ROLES)
    assert same["precision.end_heads"] == same["recall.end_mlps"] == same["recall.yy"] == 1.0
    canonical = C.overlap(paper, GC.CANONICAL_HEADS)  # all of Hanna et al.'s heads, END and YY, vs the canonical set
    assert canonical["recall.heads"] == pytest.approx(5 / 6)  # 6.1 is canonical but not in Hanna et al.'s
    assert canonical["precision.heads"] == 0.5  # 5 of their 10 heads
    none = C.overlap(C.Circuit({}, {}), paper, roles=GC.ROLES)
    assert none["precision.end_heads"] is None and none["recall.end_heads"] == 0.0
    assert [C.parse(C.name(c)) for c in paper.roles["end"]] == list(paper.roles["end"])
    assert (len(paper.heads), len(paper.mlps), paper.positions) == (10, 8, {"end": "end", "yy": "yy"})
