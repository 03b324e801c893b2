"""The replication registry: one declaration per paper, ``replications/<slug>/replication.yaml``.

Everything generic loops over it: the workflow (which rule files to include, which figures go into each report,
which models and seeds its provenance names, what the one ``metrics`` rule flattens into ``metrics.json``), config
validation (each replication's config section and its schema; every model its keys name registered), and the
paper scale's hub check (every model a replication names). Adding a replication is adding its folder and its
rule file (README, "Adding a replication").

A declaration::

    slug: ioi                       # the folder's name; also results/<scale>/<slug>/ and reports/.../<slug>.html
    title: Interpretability in the Wild (IOI)
    paper: Wang et al. 2022
    order: 2                        # place in the index and in `snakemake --cores all`
    section: ioi                    # its config section (in every workflow/config/<scale>.yaml)
    models: [ioi.model]             # config keys naming the models it runs on (a name or a list of names)
    seeds: [ioi.seed]               # config keys of its own seeds (the models' seeds are added)
    rules: workflow/rules/ioi.smk   # its rule file
    figures_rule: ioi_figures       # the rule whose outputs are its report's figures
    discovery: true                 # edge-level discovery (workflow/rules/discovery.smk) runs on its task
    metrics:                        # flattened into metrics.json: numbers only, each key prefixed
      - {path: analysis/summary.json}
      - {path: discovery/summary.json, prefix: edge.}
    config_schema: {...}            # JSON schema of its config section

A metrics source may repeat over the items of a config key: ``{path: phase/{model}/summary.json, prefix:
"phase.{n_layers}l.", each: induction_heads.phase_models}`` (models), ``{path: "scores/{item}/summary.json",
prefix: "{item}.", each: circuit_discovery.truths}``.

This module knows nothing of Snakemake; paths in a declaration are relative to ``results/<scale>/<slug>/``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
_KEYS = {"slug", "title", "paper", "order", "section", "models", "seeds", "rules", "figures_rule", "discovery",
         "metrics", "config_schema"}
_REQUIRED = _KEYS - {"discovery", "seeds"}


class RegistryError(ValueError):
    """A replication declaration is malformed; the message names the file and the key."""


@dataclass(frozen=True)
class MetricSource:
    """A JSON file of the replication's results whose numbers go into metrics.json, each key prefixed."""

    path: str
    prefix: str = ""
    # a config key holding a list (or one name): one source per item, named {item} in path and prefix; where the
    # items are models, also {model} and {n_layers}
    each: str | None = None


@dataclass(frozen=True)
class Replication:
    slug: str
    title: str
    paper: str
    order: int
    section: str
    models: tuple[str, ...]
    seeds: tuple[str, ...]
    rules: str
    figures_rule: str
    discovery: bool
    metrics: tuple[MetricSource, ...]
    config_schema: dict

    def model_names(self, cfg: dict) -> dict[str, list[str]]:
        """Config key -> the model names it holds in ``cfg`` (keys absent from ``cfg`` are left out)."""
        out = {}
        for key in self.models:
            value = lookup(cfg, key)
            if value is not None:
                out[key] = [value] if isinstance(value, str) else list(value)
        return out

    def all_models(self, cfg: dict) -> list[str]:
        """Every model the replication runs on, sorted, each once."""
        return sorted({m for ms in self.model_names(cfg).values() for m in ms})

    def metric_files(self, cfg: dict) -> list[tuple[str, str]]:
        """(path relative to results/<scale>/<slug>/, key prefix) of every metrics source under ``cfg``."""
        from mechrepro.models.registry import get_spec

        out = []
        for src in self.metrics:
            if src.each is None:
                out.append((src.path, src.prefix))
                continue
            items = lookup(cfg, src.each)
            if items is None:
                raise KeyError(f"replication {self.slug!r}: metrics source {src.path!r} repeats over config key "
                               f"{src.each!r}, which the config does not have")
            for item in [items] if isinstance(items, str) else items:
                fill = {"item": item}
                if "{model}" in src.path + src.prefix or "{n_layers}" in src.path + src.prefix:
                    fill |= {"model": item, "n_layers": get_spec(item).n_layers}
                out.append((src.path.format(**fill), src.prefix.format(**fill)))
        return out


def lookup(cfg: dict, key: str) -> Any:
    """``cfg["a"]["b"]`` for ``key`` "a.b"; None where a part is missing."""
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _parse(path: Path, root: Path) -> Replication:
    try:
        d = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise RegistryError(f"{path}: not valid YAML ({err})") from err
    if not isinstance(d, dict):
        raise RegistryError(f"{path}: a declaration is a mapping of {', '.join(sorted(_KEYS))}")
    if unknown := set(d) - _KEYS:
        raise RegistryError(f"{path}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(_KEYS))})")
    if missing := _REQUIRED - set(d):
        raise RegistryError(f"{path}: missing key(s) {', '.join(sorted(missing))}")
    if d["slug"] != path.parent.name:
        raise RegistryError(f"{path}: slug {d['slug']!r} is not the folder's name {path.parent.name!r}")
    try:
        metrics = tuple(MetricSource(**m) for m in d["metrics"])
    except TypeError as err:
        raise RegistryError(f"{path}: key 'metrics': each source is {{path, prefix, each}} ({err})") from err
    if not metrics:
        raise RegistryError(f"{path}: key 'metrics': at least one source")
    rules = root / d["rules"]
    if not rules.exists():
        raise RegistryError(f"{path}: key 'rules': {d['rules']} does not exist")
    return Replication(d["slug"], d["title"], d["paper"], int(d["order"]), d["section"], tuple(d["models"]),
                       tuple(d.get("seeds", ())), d["rules"], d["figures_rule"], bool(d.get("discovery", False)),
                       metrics, dict(d["config_schema"]))


@functools.cache
def load(root: str | None = None) -> dict[str, Replication]:
    """Every declaration under ``<root>/replications/`` by slug, in their declared order."""
    base = Path(root or ROOT)
    folder = base / "replications"
    reps = [_parse(p, base) for p in sorted(folder.glob("*/replication.yaml"))]
    if not reps:
        raise RegistryError(f"no replication declarations (replications/<slug>/replication.yaml) under {folder}")
    orders = [r.order for r in reps]
    if len(set(orders)) != len(orders):
        raise RegistryError(f"two replications share an order: {sorted(orders)}")
    sections = [r.section for r in reps]
    if len(set(sections)) != len(sections):
        raise RegistryError(f"two replications share a config section: {sorted(sections)}")
    return {r.slug: r for r in sorted(reps, key=lambda r: r.order)}


def slugs() -> list[str]:
    return list(load())


def model_keys(cfg: dict) -> dict[str, list[str]]:
    """Config key -> model names, over every replication."""
    out: dict[str, list[str]] = {}
    for rep in load().values():
        out.update(rep.model_names(cfg))
    return out


__all__ = ["MetricSource", "RegistryError", "Replication", "load", "lookup", "model_keys", "slugs"]
