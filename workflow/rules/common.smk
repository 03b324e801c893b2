# Helpers, config loading and validation, wildcard constraints. No rules here.

import os
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

# The library is importable here and in every job (scripts run in child processes), installed or not.
_SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, _SRC)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_SRC, os.environ.get("PYTHONPATH")) if p)


envvars:
    "PYTHONPATH",


from mechrepro import replications
from mechrepro.config import ConfigError, check_scale, coerce_cli_values, config_hash, resolve, validate_config
from mechrepro.models.registry import get_spec
from mechrepro.provenance import report_version

try:
    SCALE = check_scale(config.get("scale", "toy"))
except ConfigError as err:
    raise WorkflowError(str(err))


configfile: f"{workflow.basedir}/workflow/config/{SCALE}.yaml"


config["scale"] = SCALE
try:
    _SCHEMA = f"{workflow.basedir}/workflow/schemas/config.schema.yaml"
    validate_config(coerce_cli_values(config, _SCHEMA), _SCHEMA)
    CFG = resolve(config)
except ConfigError as err:
    raise WorkflowError(str(err))

# The smoke run is the paper scale against a fabricated hub cache (made by the fabricate_hub_cache job, with
# mechrepro.fabricate): the same model names, the real loaders (from_pretrained, SAE.from_pretrained, the datasets'
# parquet shards). The environment is set here, before any job, so that every job reads that cache, offline.
SMOKE = SCALE == "paper" and CFG["smoke"]
FABRICATED_HUB = f"results/{SCALE}/hf/fabricated.json"
if SMOKE:
    from mechrepro.hub import use_cache

    use_cache(os.path.dirname(FABRICATED_HUB))

# The paper scale's downloads, checked before any job starts: one list of what is missing and how to provide it,
# instead of a stack trace from deep inside a library in every job. (The smoke run's cache does not exist before
# its first job: the fabricate_hub_cache job makes it and runs the same check on it.)
if SCALE == "paper" and not SMOKE:
    from mechrepro.hub import explain, missing

    if _missing := missing(CFG):
        raise WorkflowError(explain(_missing))

# The replications, each declared once in replications/<slug>/replication.yaml (src/mechrepro/replications.py).
REGISTRY = replications.load()
SLUGS = list(REGISTRY)
CAPABILITY_MODELS = CFG["capabilities"]["models"]
CONFIG_HASH = config_hash(CFG)
VERSION = report_version(workflow.basedir, CONFIG_HASH)
# A GPU helps the paper-scale model runs; toy models and smoke runs are CPU jobs.
GPU = 1 if SCALE == "paper" and not CFG["smoke"] else 0
MODELS_DIR = f"results/{SCALE}/models"
# The one software environment of every rule (used with --use-conda; a pip install works the same).
ENV = "../envs/mechrepro.yaml"


def _alternatives(names):
    return "|".join(re.escape(n) for n in names) or "(?!)"


wildcard_constraints:
    scale=re.escape(SCALE),
    version=re.escape(VERSION),
    slug=_alternatives(SLUGS),
    model=_alternatives(sorted({*CFG["toy_models"], *CAPABILITY_MODELS})),
    corpus=_alternatives(CFG["corpus"]),
    expansion=r"[0-9]+",


def models_dir(wildcards):
    return f"results/{wildcards.scale}/models"


def slug_results(wildcards):
    return f"results/{wildcards.scale}/{wildcards.slug}"


def _corpus_file(wildcards, split):
    return f"results/{wildcards.scale}/corpus/{get_spec(wildcards.model).corpus}/{split}.safetensors"


def corpus_train(wildcards):
    """Training tokens of the corpus the toy model ``{model}`` trains on (its recipe names it)."""
    return _corpus_file(wildcards, "train")


def corpus_heldout(wildcards):
    """Held-out documents of ``{model}``'s corpus; none for pretrained / random-init models."""
    return [_corpus_file(wildcards, "heldout")] if get_spec(wildcards.model).kind == "toy" else []


def mono_corpus(split):
    """The corpus split the monosemanticity model trains on (its SAEs read its activations there); none for
    a pretrained or random-init model (the paper scale streams its dataset)."""
    spec = get_spec(CFG["monosemanticity"]["model"])
    return [f"results/{SCALE}/corpus/{spec.corpus}/{split}.safetensors"] if spec.kind == "toy" else []


def mono_training():
    """What an SAE's training depends on (not the evaluation's settings: changing those retrains nothing)."""
    keep = ("model", "hook", "dataset", "n_ctx", "n_train_docs", "dictionaries", "l1_coefficient", "batch_size", "lr",
            "seed")
    return {k: CFG["monosemanticity"][k] for k in keep}


def mono_models():
    """The models the monosemanticity evaluation loads: its model and the probed ones."""
    return [CFG["monosemanticity"]["model"], *CFG["monosemanticity"].get("probes", {}).get("models", [])]


def mono_expansions():
    """The SAE dictionary sizes, as multiples of the MLP's width."""
    return [d["expansion"] for d in CFG["monosemanticity"]["dictionaries"]]


def corpus_spec(wildcards):
    """The scale config's block for corpus ``{corpus}``."""
    return CFG["corpus"][wildcards.corpus]


def model_files(wildcards):
    """The trained files of ``{model}`` if it is a toy model."""
    return model_inputs([wildcards.model])


def toy_recipe(wildcards):
    """The model's full recipe: a param, so that changing it in the registry retrains the model."""
    return get_spec(wildcards.model).to_dict()


def model_seeds(names):
    """Training and corpus seeds of the toy models among ``names`` (random-init models: their init seed)."""
    out = {}
    for n in sorted(names):  # sorted: a set's order changes between runs, and params must not
        spec = get_spec(n)
        if spec.kind == "toy":
            out[f"train {n}"] = spec.train.seed
            out[f"corpus {spec.corpus}"] = CFG["corpus"][spec.corpus]["seed"]
        elif spec.kind == "random":
            out[f"init {n}"] = spec.seed
    return out


def model_inputs(names):
    """What a job needs to load the models ``names``: a toy model's trained files; in the smoke run, the fabricated
    hub cache for a pretrained one (elsewhere the hub or the user's cache, checked before any job)."""
    toy = [f"{MODELS_DIR}/{n}/model.json" for n in names if get_spec(n).kind == "toy"]
    hub = [FABRICATED_HUB] if SMOKE and any(get_spec(n).kind == "pretrained" for n in names) else []
    return toy + hub


# What each replication's report needs, from its declaration (filled in by workflow/rules/reports.smk, once each
# file of rules is read) -- slug -> {"figures": [paths], "models": [names], "seeds": {name: seed}}
REPLICATIONS = {}


def replication_seeds(rep):
    """The config's seed, the replication's own (its declaration's ``seeds`` keys) and its models' seeds."""
    own = {key.removesuffix(".seed"): replications.lookup(CFG, key) for key in rep.seeds}
    return {"config": CFG["seed"], **own, **model_seeds(rep.all_models(CFG))}


def metric_sources(wildcards):
    """The JSON files the ``metrics`` rule flattens for ``{slug}`` (its declaration's ``metrics``)."""
    return [f"results/{wildcards.scale}/{wildcards.slug}/{path}" for path, _ in REGISTRY[wildcards.slug].metric_files(CFG)]


def metric_prefixes(wildcards):
    return [prefix for _, prefix in REGISTRY[wildcards.slug].metric_files(CFG)]


def report_figures(wildcards):
    return REPLICATIONS[wildcards.slug]["figures"]


def report_models(wildcards):
    return REPLICATIONS[wildcards.slug]["models"]


def report_seeds(wildcards):
    return REPLICATIONS[wildcards.slug]["seeds"]


def report_benchmarks(wildcards):
    """Glob patterns of the benchmark TSVs that add up to the report's wall time (read at run time)."""
    toy = [m for m in REPLICATIONS[wildcards.slug]["models"] if get_spec(m).kind == "toy"]
    return [f"results/{SCALE}/benchmarks/{wildcards.slug}_*.tsv", f"results/{SCALE}/benchmarks/corpus_*.tsv"] + [
        f"results/{SCALE}/benchmarks/train_{m}.tsv" for m in toy
    ]


# Edge-level circuit discovery (workflow/rules/discovery.smk) runs on the tasks of these replications.
DISCOVERY_SLUGS = [slug for slug, rep in REGISTRY.items() if rep.discovery]


def discovery_model_files(wildcards):
    """The trained files of the models the ``{slug}`` task runs on (none for a pretrained one)."""
    return model_inputs(REGISTRY[wildcards.slug].all_models(CFG))


def discovery_section(wildcards):
    """The ``{slug}`` task's config section (its prompts and model)."""
    return CFG[REGISTRY[wildcards.slug].section]
