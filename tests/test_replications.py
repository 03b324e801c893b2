"""The replication registry (src/mechrepro/replications.py): every declaration loads, and a broken one is named."""

from pathlib import Path

import pytest
import yaml

from mechrepro import replications as R
from mechrepro.config import load_schema

ROOT = Path(__file__).resolve().parents[1]


def test_every_replication_folder_is_declared_and_in_order():
    reps = R.load()
    folders = sorted(p.parent.name for p in (ROOT / "replications").glob("*/claims.yaml"))
    assert sorted(reps) == folders
    assert [r.order for r in reps.values()] == sorted(r.order for r in reps.values())
    for rep in reps.values():
        assert (ROOT / rep.rules).exists() and (ROOT / "replications" / rep.slug / "report.ipynb").exists()


def test_the_schema_requires_each_replications_section():
    schema = load_schema(ROOT / "workflow/schemas/config.schema.yaml")
    for rep in R.load().values():
        assert rep.section in schema["required"] and schema["properties"][rep.section] == rep.config_schema


def test_models_and_metric_sources_follow_the_config():
    cfg = yaml.safe_load((ROOT / "workflow/config/ci.yaml").read_text())
    ih = R.load()["induction_heads"]
    keys = ih.model_names(cfg)
    assert keys["induction_heads.main_model"] == [cfg["induction_heads"]["main_model"]]
    files = ih.metric_files(cfg)
    assert files[0] == ("analysis/summary.json", "main.")
    assert len(files) == 1 + len(cfg["induction_heads"]["phase_models"])
    assert all(path.startswith("phase/") and prefix.startswith("phase.") and prefix.endswith("l.")
               for path, prefix in files[1:])
    assert R.lookup(cfg, "monosemanticity.no.such") is None


def _declare(tmp_path: Path, folder_name: str, **over) -> Path:
    src = yaml.safe_load((ROOT / "replications/ioi/replication.yaml").read_text())
    (tmp_path / "workflow/rules").mkdir(parents=True, exist_ok=True)
    (tmp_path / "workflow/rules/ioi.smk").write_text("")
    d = {**src, "slug": folder_name, **over}
    d = {k: v for k, v in d.items() if v is not None}
    folder = tmp_path / "replications" / folder_name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "replication.yaml").write_text(yaml.safe_dump(d))
    return tmp_path


@pytest.mark.parametrize(("slug", "over", "message"), [
    ("ioi", {"colour": "red"}, "unknown key(s) colour"),
    ("other", {"slug": "ioi"}, "is not the folder's name"),
    ("ioi", {"rules": "workflow/rules/nope.smk"}, "does not exist"),
    ("ioi", {"metrics": [{"path": "a.json", "weight": 2}]}, "key 'metrics'"),
    ("ioi", {"figures_rule": None}, "missing key(s) figures_rule"),
])
def test_a_broken_declaration_is_named(tmp_path, slug, over, message):
    root = _declare(tmp_path, slug, **over)
    R.load.cache_clear()
    try:
        with pytest.raises(R.RegistryError, match=message.replace("(", r"\(").replace(")", r"\)")):
            R.load(str(root))
    finally:
        R.load.cache_clear()


def test_two_replications_in_one_config_section_are_refused(tmp_path):
    _declare(tmp_path, "ioi")
    root = _declare(tmp_path, "ioi_copy", order=9)  # same section: ioi
    R.load.cache_clear()
    try:
        with pytest.raises(R.RegistryError, match="share a config section"):
            R.load(str(root))
    finally:
        R.load.cache_clear()
