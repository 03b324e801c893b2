from pathlib import Path

import pytest
import yaml

from mechrepro.claims import Claim, evaluate, load_claims, summarize
from mechrepro.config import ConfigError, check_scale, resolve, validate_config

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"


def scale_config(scale: str) -> dict:
    cfg = yaml.safe_load((ROOT / f"workflow/config/{scale}.yaml").read_text())
    cfg["scale"] = scale
    return cfg


@pytest.mark.parametrize("scale", ["toy", "ci", "paper"])
def test_shipped_configs_are_valid(scale):
    cfg = scale_config(scale)
    validate_config(cfg, SCHEMA)
    resolve(cfg)


def test_unknown_key_is_named():
    cfg = scale_config("ci")
    cfg["induction_heads"]["n_probez"] = 3
    with pytest.raises(ConfigError, match="induction_heads.n_probez"):
        validate_config(cfg, SCHEMA)
    cfg = scale_config("ci")
    cfg["colour"] = "blue"
    with pytest.raises(ConfigError, match="'colour'"):
        validate_config(cfg, SCHEMA)


@pytest.mark.parametrize("key,value", [("n_probes", 0), ("n_probes", "many"), ("head_threshold", 1.5),
                                       ("probe_lengths", []), ("main_model", 3)])
def test_bad_values_are_named(key, value):
    cfg = scale_config("ci")
    cfg["induction_heads"][key] = value
    with pytest.raises(ConfigError, match=f"induction_heads.{key}"):
        validate_config(cfg, SCHEMA)


def test_bad_scale():
    with pytest.raises(ConfigError, match="'scale'.*huge"):
        check_scale("huge")


def test_resolve_checks_models_and_smoke():
    cfg = scale_config("ci")
    cfg["induction_heads"]["main_model"] = "gpt-5"
    with pytest.raises(ConfigError, match="unknown model 'gpt-5'.*registered"):
        resolve(cfg)
    cfg = scale_config("ci")
    cfg["smoke"] = True
    with pytest.raises(ConfigError, match="only the paper scale"):
        resolve(cfg)
    cfg = scale_config("paper")
    cfg["smoke"] = True
    out = resolve(cfg)
    # the smoke run keeps the papers' model names (read from a fabricated cache) and shrinks only sizes
    assert out["induction_heads"]["main_model"] == "gpt2-small" and out["monosemanticity"]["model"] == "gelu-1l"
    assert out["fabricated_hub"]["gpt2_d_model"] == 96
    assert out["induction_heads"]["probe_lengths"] == [20]
    assert out["induction_heads"]["top_k"] == 5  # untouched keys are kept


def _claim(**kw):
    base = dict(id="c", claim="x", source="s", metric="m", comparator=">=", value=1.0, scales=("toy",),
                threshold_source="t")
    base.update(kw)
    return Claim(**base)


def test_claim_statuses():
    claims = [_claim(id="a"), _claim(id="b", value=5.0), _claim(id="c", scales=("paper",)),
              _claim(id="d", metric="missing"), _claim(id="e", paper_model=True),
              _claim(id="f", comparator="==", value=1.0, tolerance=0.1), _claim(id="g", metric="nan")]
    rows = evaluate(claims, {"m": 1.05, "nan": float("nan")}, "toy", random_weights=True)
    status = {r["id"]: r["status"] for r in rows}
    assert status == {"a": "pass", "b": "fail", "c": "not run", "d": "not run", "e": "not comparable",
                      "f": "pass", "g": "fail"}
    assert summarize(rows) == {"pass": 2, "fail": 2, "not run": 2, "not comparable": 1}


def test_bad_comparator():
    with pytest.raises(ValueError, match="comparator"):
        _claim(comparator="~")


def test_shipped_claims_load():
    for path in ROOT.glob("replications/*/claims.yaml"):
        claims = load_claims(path)
        assert claims and all(c.threshold_source for c in claims)


def test_corpus_and_capability_config_errors_are_named():
    cfg = scale_config("ci")
    cfg["corpus"]["lm"]["mixture"]["poetry"] = 0.5
    with pytest.raises(ConfigError, match="corpus.lm.mixture.*poetry"):
        validate_config(cfg, SCHEMA)
    cfg = scale_config("ci")
    del cfg["corpus"]["lm"]
    with pytest.raises(ConfigError, match="'toy-lm-ci' trains on corpus 'lm'"):
        resolve(cfg)
    cfg = scale_config("toy")
    cfg["capabilities"]["required"]["attn-only-9l"] = {"ioi_accuracy": 0.9}
    with pytest.raises(ConfigError, match="unknown model 'attn-only-9l'"):
        resolve(cfg)
    cfg = scale_config("toy")
    cfg["capabilities"]["required"]["toy-lm"]["ioi_acuracy"] = 0.9
    with pytest.raises(ConfigError, match="ioi_acuracy"):
        validate_config(cfg, SCHEMA)
    cfg = scale_config("ci")
    cfg["capabilities"]["models"] = ["toy-lm"]  # a toy model this scale does not train
    with pytest.raises(ConfigError, match="'toy-lm' is not in toy_models"):
        resolve(cfg)
