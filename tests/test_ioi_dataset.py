"""The IOI replication's dataset: Wang et al.'s 15 templates and vocabulary under the real GPT-2 tokenizer,
ABC corruptions, grouping by (template, order), group metrics and the ``ioi`` config checks."""

import dataclasses

import pytest
import torch

from mechrepro.data.tokenizer import build_tokenizer, single_token_id
from mechrepro.models.load import gpt2_tokenizer
from mechrepro.tasks.ioi import (
    PAPER_BABA_TEMPLATES,
    PAPER_NAMES,
    PAPER_OBJECTS,
    PAPER_PLACES,
    PAPER_TEMPLATES,
    IOIConfig,
    PromptGroup,
    abc_corruption,
    group_prompts,
    ioi_dataset,
    make_ioi_prompts,
    over_groups,
)

N_PROMPTS = 60  # 15 templates x (ABBA, BABA) x 2 prompts
ROLES = ("io", "s1", "s2")


def config(**overrides) -> IOIConfig:
    base = dict(model="gpt2-small", n_prompts=N_PROMPTS, vocabulary="paper", exclude_templates=(),
                direct_threshold=0.1, path_threshold=0.1, attention_threshold=0.5, copy_threshold=0.5,
                copy_top_k=5, n_random_k=10, greedy_k=5, seed=0)
    return IOIConfig(**{**base, **overrides})


@pytest.fixture(scope="module")
def gpt2():
    return gpt2_tokenizer()


@pytest.fixture(scope="module")
def dataset(gpt2):
    return ioi_dataset(gpt2, config())


def _pos(prompts, i: int) -> dict[str, int]:
    return {k: int(v[i]) for k, v in prompts.positions.items()}


# --- 1. templates and clean prompts --------------------------------------------------------------------------

def test_paper_templates_use_the_project_placeholders():
    assert len(PAPER_TEMPLATES) == len(PAPER_BABA_TEMPLATES) == 15
    assert [t.name for t in PAPER_TEMPLATES] == [f"paper-{i:02d}" for i in range(1, 16)]
    for t, baba in zip(PAPER_TEMPLATES, PAPER_BABA_TEMPLATES, strict=True):
        assert "[" not in t.text and "]" not in t.text
        for ph in ("{N1}", "{N2}", "{S}", "{IO}"):
            assert t.text.count(ph) == 1, (t.name, ph)
        # N1 and N2 introduced first, then S, the final IO is the answer at the very end
        assert t.text.index("{N1}") < t.text.index("{N2}") < t.text.index("{S}") < t.text.index("{IO}")
        assert t.text.endswith(" {IO}")
        # back-substitution gives the paper's text
        back = t.text.replace("{N1}", "[B]").replace("{N2}", "[A]").replace("{S}", "[B]").replace("{IO}", "[A]")
        assert back.replace("{PLACE}", "[PLACE]").replace("{OBJECT}", "[OBJECT]") == baba


def test_clean_prompts_cover_every_template_in_both_orders(dataset):
    clean, _ = dataset
    assert len(clean.texts) == len(clean.tokens) == len(clean.io) == len(clean.s) == N_PROMPTS
    pairs = {(t, o) for t, o in zip(clean.templates, clean.orders, strict=True)}
    assert pairs == {(t.name, o) for t in PAPER_TEMPLATES for o in ("ABBA", "BABA")}


def test_clean_prompts_put_names_at_their_positions(gpt2, dataset):
    clean, _ = dataset
    by_name = {t.name: t for t in PAPER_TEMPLATES}
    for i, (text, ids) in enumerate(zip(clean.texts, clean.tokens, strict=True)):
        f, io, s = clean.fills[i], int(clean.io[i]), int(clean.s[i])
        pos, order = _pos(clean, i), clean.orders[i]
        assert f["template"] == clean.templates[i] and f["order"] == order
        assert io == single_token_id(gpt2, " " + f["IO"]) and s == single_token_id(gpt2, " " + f["S"])
        assert io != s
        assert ids[0] == gpt2.bos_token_id and gpt2.decode(ids[1:]) == text
        assert ids[pos["io"]] == io and ids[pos["s1"]] == s and ids[pos["s2"]] == s, text
        # the names occur exactly at those three positions
        assert [j for j, t in enumerate(ids) if t in (io, s)] == sorted(pos[k] for k in ROLES), text
        if order == "ABBA":
            assert pos["io"] < pos["s1"], text
        else:
            assert pos["s1"] < pos["io"], text
        assert pos["s2"] > max(pos["io"], pos["s1"]) and pos["end"] == len(ids) - 1
        # the text is the filled template cut right before the final " IO" (the answer)
        full = by_name[clean.templates[i]].text.format(**f)
        assert full.endswith(" " + f["IO"]) and text == full[: -len(" " + f["IO"])]
        assert not text.endswith(f["IO"])


def test_make_ioi_prompts_with_paper_vocabulary_matches_ioi_dataset(gpt2, dataset):
    clean, _ = dataset
    p = make_ioi_prompts(gpt2, N_PROMPTS, 0, names=PAPER_NAMES, places=PAPER_PLACES, objects=PAPER_OBJECTS,
                         templates=PAPER_TEMPLATES)
    assert p.texts == clean.texts and p.tokens == clean.tokens
    assert all(torch.equal(p.positions[k], clean.positions[k]) for k in clean.positions)


# --- 2, 3. single-token vocabulary ---------------------------------------------------------------------------

def test_paper_vocabulary_is_single_gpt2_tokens(gpt2):
    assert len(PAPER_NAMES) == len(set(PAPER_NAMES)) == 99
    for w in (*PAPER_NAMES, *PAPER_PLACES, *PAPER_OBJECTS):
        i = single_token_id(gpt2, " " + w)
        assert gpt2.decode([i]) == " " + w


@pytest.mark.parametrize("word", ["Zebediah", "Maximilian"])
@pytest.mark.parametrize("slot", ["names", "places", "objects"])
def test_multi_token_words_are_rejected_by_name(gpt2, word, slot):
    assert len(gpt2.encode(" " + word, add_special_tokens=False)) > 1
    vocab = {"names": PAPER_NAMES, "places": PAPER_PLACES, "objects": PAPER_OBJECTS}
    vocab[slot] = (*vocab[slot], word)
    with pytest.raises(ValueError, match=word):
        make_ioi_prompts(gpt2, 4, 0, templates=PAPER_TEMPLATES, **vocab)


# --- 4. ABC corruption -----------------------------------------------------------------------------------

def test_abc_corruption_replaces_exactly_the_three_names(gpt2, dataset):
    clean, abc = dataset
    assert abc.templates == clean.templates and abc.orders == clean.orders
    assert torch.equal(abc.io, clean.io) and torch.equal(abc.s, clean.s)
    name_ids = {single_token_id(gpt2, " " + n) for n in PAPER_NAMES}
    for i, (c, a) in enumerate(zip(clean.tokens, abc.tokens, strict=True)):
        pos = _pos(clean, i)
        assert len(a) == len(c) and a[0] == gpt2.bos_token_id and gpt2.decode(a[1:]) == abc.texts[i]
        at = [a[pos[k]] for k in ROLES]
        assert set(at) <= name_ids
        assert len(set(at)) == 3 and not set(at) & {int(clean.io[i]), int(clean.s[i])}, abc.texts[i]
        others = [j for j in range(len(c)) if j not in {pos[k] for k in ROLES}]
        assert [a[j] for j in others] == [c[j] for j in others], (clean.texts[i], abc.texts[i])


def test_abc_corruption_needs_fills(gpt2, dataset):
    clean, _ = dataset
    with pytest.raises(ValueError, match="fills"):
        abc_corruption(gpt2, dataclasses.replace(clean, fills=None), 0, names=PAPER_NAMES)


# --- 5. grouping ---------------------------------------------------------------------------------------

def test_group_prompts_one_length_and_position_set_per_group(dataset):
    clean, abc = dataset
    groups = group_prompts(clean, abc)
    assert len(groups) == 30
    assert sorted(i for g in groups for i in g.index.tolist()) == list(range(N_PROMPTS))
    assert {(g.template, g.order) for g in groups} == set(zip(clean.templates, clean.orders, strict=True))
    for g in groups:
        idx = g.index.tolist()
        assert len(idx) == 2
        assert all(clean.templates[i] == g.template and clean.orders[i] == g.order for i in idx)
        assert g.clean.shape == g.corrupted.shape == (len(idx), len(clean.tokens[idx[0]]))
        assert g.clean.tolist() == [clean.tokens[i] for i in idx]
        assert g.corrupted.tolist() == [abc.tokens[i] for i in idx]
        assert torch.equal(g.io, clean.io[g.index]) and torch.equal(g.s, clean.s[g.index])
        assert set(g.positions) == {"io", "s1", "s2", "end", "s1+1"}
        for i in idx:
            pos = _pos(clean, i)
            assert all(g.positions[k] == pos[k] for k in ("io", "s1", "s2", "end"))
        assert g.positions["s1+1"] == g.positions["s1"] + 1
        assert g.positions["end"] == g.clean.shape[1] - 1
        assert (g.clean[:, g.positions["io"]] == g.io).all() and (g.clean[:, g.positions["s2"]] == g.s).all()


def test_group_prompts_rejects_unequal_lengths(dataset):
    clean, abc = dataset
    tokens = [list(t) for t in clean.tokens]
    tokens[0] = tokens[0] + [tokens[0][-1]]
    with pytest.raises(ValueError, match=clean.templates[0]):
        group_prompts(dataclasses.replace(clean, tokens=tokens), abc)
    # a corrupted prompt of another length is caught too
    corrupted = [list(t) for t in abc.tokens]
    corrupted[3] = corrupted[3][:-1]
    with pytest.raises(ValueError, match="differ in length"):
        group_prompts(clean, dataclasses.replace(abc, tokens=corrupted))


def test_group_prompts_rejects_unequal_positions(dataset):
    clean, abc = dataset
    positions = {k: v.clone() for k, v in clean.positions.items()}
    positions["s2"][0] += 1
    with pytest.raises(ValueError, match="role positions"):
        group_prompts(dataclasses.replace(clean, positions=positions), abc)


# --- 6. metrics over groups -------------------------------------------------------------------------------

def test_group_metric_is_the_mean_logit_difference_at_the_end():
    g = torch.Generator().manual_seed(0)
    n, n_pos, d_vocab = 5, 4, 30
    io, s = torch.tensor([1, 5, 7, 2, 29]), torch.tensor([3, 0, 8, 9, 1])
    group = PromptGroup("paper-01", "ABBA", torch.arange(n), torch.zeros(n, n_pos, dtype=torch.long),
                        torch.zeros(n, n_pos, dtype=torch.long), io, s, {})
    logits = torch.randn(n, n_pos, d_vocab, generator=g)
    want = sum(logits[i, -1, io[i]].item() - logits[i, -1, s[i]].item() for i in range(n)) / n
    assert group.metric(logits).item() == pytest.approx(want, abs=1e-6)


def test_over_groups_equals_the_metric_over_all_prompts(dataset):
    clean, abc = dataset
    # unequal group sizes, so that a plain mean over groups would differ from the prompt-weighted one
    keep = [i for i in range(N_PROMPTS) if i % 4 != 3 or clean.templates[i] in ("paper-01", "paper-02")]
    sub = lambda p: dataclasses.replace(  # noqa: E731
        p, texts=[p.texts[i] for i in keep], tokens=[p.tokens[i] for i in keep], io=p.io[keep], s=p.s[keep],
        templates=[p.templates[i] for i in keep], orders=[p.orders[i] for i in keep],
        positions={k: v[keep] for k, v in p.positions.items()}, fills=None)
    c, a = sub(clean), sub(abc)
    groups = group_prompts(c, a)
    assert len({len(g.io) for g in groups}) > 1
    logits = torch.randn(len(keep), int(max(c.io.max(), c.s.max())) + 1, generator=torch.Generator().manual_seed(1))
    rows = torch.arange(len(keep))
    want = (logits[rows, c.io] - logits[rows, c.s]).mean()
    got = over_groups(groups, lambda g: g.metric(logits[g.index][:, None, :]))
    assert got.item() == pytest.approx(want.item(), abs=1e-5)
    unweighted = torch.stack([g.metric(logits[g.index][:, None, :]) for g in groups]).mean()
    assert unweighted.item() != pytest.approx(want.item(), abs=1e-5)


# --- 7. config checks -----------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, key", [
    (dict(vocabulary="klingon"), "ioi.vocabulary"),
    (dict(exclude_templates=("paper-16",)), "ioi.exclude_templates"),
    (dict(exclude_templates=("ioi-went",)), "ioi.exclude_templates"),
    (dict(exclude_templates=tuple(t.name for t in PAPER_TEMPLATES)), "ioi.exclude_templates"),
    (dict(n_prompts=29), "ioi.n_prompts"),
    (dict(n_prompts=27, exclude_templates=("paper-10",)), "ioi.n_prompts"),
    (dict(direct_threshold=0.0), "ioi.direct_threshold"),
    (dict(path_threshold=1.0), "ioi.path_threshold"),
    (dict(attention_threshold=-0.2), "ioi.attention_threshold"),
    (dict(copy_threshold=1.5), "ioi.copy_threshold"),
    (dict(copy_top_k=0), "ioi.copy_top_k"),
    (dict(n_random_k=0), "ioi.n_random_k"),
    (dict(greedy_k=0), "ioi.greedy_k"),
])
def test_config_rejects_bad_values_naming_the_key(overrides, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        config(**overrides)


def test_config_accepts_the_boundaries_and_lists():
    assert len(config(n_prompts=30).templates) == 15
    cfg = config(n_prompts=28, exclude_templates=("paper-10",))
    assert [t.name for t in cfg.templates] == [t.name for t in PAPER_TEMPLATES if t.name != "paper-10"]
    section = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    section["exclude_templates"] = ["paper-10"]
    assert IOIConfig.from_config(section) == cfg


# --- 8. toy vocabulary ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def toy():
    return build_tokenizer()


def test_toy_tokenizer_rejects_the_commuting_template(toy):
    with pytest.raises(ValueError, match="commuting"):
        ioi_dataset(toy, config(vocabulary="toy"))


def test_toy_dataset_builds_without_the_commuting_template(toy):
    cfg = config(vocabulary="toy", n_prompts=56, exclude_templates=("paper-10",))
    clean, abc = ioi_dataset(toy, cfg)
    assert "paper-10" not in clean.templates and len(set(clean.templates)) == 14
    groups = group_prompts(clean, abc)
    assert len(groups) == 28
    for i, ids in enumerate(clean.tokens):
        pos = _pos(clean, i)
        assert ids[pos["io"]] == clean.io[i] and ids[pos["s1"]] == clean.s[i] == ids[pos["s2"]]
        assert toy.unk_token_id not in ids and toy.unk_token_id not in abc.tokens[i]
