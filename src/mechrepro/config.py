"""Scale configs: loading, merging and schema validation.

The Snakefile validates the merged config against ``workflow/schemas/config.schema.yaml``
through :func:`validate_config` before any job starts; errors name the offending key.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCALES = ("toy", "ci", "paper")


class ConfigError(ValueError):
    """A config key or value is invalid; the message names the key."""


def check_scale(scale: Any) -> str:
    if scale not in SCALES:
        raise ConfigError(f"config key 'scale': {scale!r} is not one of {', '.join(SCALES)}")
    return scale


def _describe(err: jsonschema.ValidationError) -> str:
    """One line per error, naming the key: "config key 'a.b': <what is wrong>"."""
    parts = [str(p) for p in err.absolute_path]
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed))
        key = ".".join(parts + extra[:1])
        return f"config key '{key}': unknown key (allowed here: {', '.join(allowed)})"
    if err.validator == "required":
        missing = err.message.split("'")[1]
        return f"config key '{'.'.join(parts + [missing])}': required but missing"
    return f"config key '{'.'.join(parts) or '<root>'}': {err.message}"


_CLI_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def load_schema(schema_path: str | Path) -> dict:
    """The config schema: ``schema_path`` with each replication's section (its declaration's ``config_schema``,
    :mod:`mechrepro.replications`) added as a required property."""
    from mechrepro import replications

    schema = yaml.safe_load(Path(schema_path).read_text())
    for rep in replications.load().values():
        if rep.section in schema["properties"]:
            raise ConfigError(f"config section {rep.section!r} of replication {rep.slug!r} is also in {schema_path}")
        schema["properties"][rep.section] = rep.config_schema
        schema["required"].append(rep.section)
    return schema


@functools.lru_cache(maxsize=4)
def _validator(schema_path: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(load_schema(schema_path))


def _coerce(value: Any, node: dict) -> Any:
    """``value`` with strings turned into the integer, number or boolean that the schema ``node`` asks for."""
    if isinstance(value, dict):
        props, extra = node.get("properties", {}), node.get("additionalProperties")
        return {k: _coerce(v, props.get(k, extra if isinstance(extra, dict) else {})) for k, v in value.items()}
    if isinstance(value, list):
        return [_coerce(v, node.get("items", {})) for v in value]
    if isinstance(value, str):
        kind = node.get("type")
        try:
            if kind == "integer":
                return int(value)
            if kind == "number":
                return float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            return value  # left for the schema to name
        if kind == "boolean" and value.lower() in _CLI_BOOLEANS:
            return _CLI_BOOLEANS[value.lower()]
    return value


def coerce_cli_values(config: dict, schema_path: str | Path) -> dict:
    """Snakemake's ``--config`` reads nested values as strings (``ioi={n_prompts: 30}`` gives "30", and
    ``smoke=true`` "true"): turn each into the type the schema asks for, in place. Strings that are not numbers
    or booleans stay, for :func:`validate_config` to name."""
    config.update(_coerce(config, _validator(str(schema_path)).schema))
    return config


def _errors(validator: jsonschema.Draft202012Validator, config: dict, prefix: str = "") -> list[str]:
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    return [_describe(e).replace("config key '", f"config key '{prefix}", 1) for e in errors]


def validate_config(config: dict, schema_path: str | Path) -> None:
    """Raise :class:`ConfigError` listing every invalid key of ``config``.

    ``smoke_config`` (the paper scale's offline overrides) is checked too: the config with it merged in must
    pass the same schema, and its errors are named ``smoke_config.<key>``.
    """
    validator = _validator(str(schema_path))
    problems = _errors(validator, config)
    over = config.get("smoke_config")
    if not problems and isinstance(over, dict) and over:
        base = {k: v for k, v in config.items() if k not in ("smoke", "smoke_config")}
        problems = _errors(validator, _deep_merge(base, over), prefix="smoke_config.")
    if problems:
        raise ConfigError("invalid config:\n" + "\n".join("  " + p for p in problems))


def config_hash(config: dict) -> str:
    """Short stable hash of the scientific config (order-independent)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:10]


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _check_layers(key: str, model: str, layers: list[int]) -> None:
    from mechrepro.models.registry import REGISTRY

    n = REGISTRY[model].n_layers
    if n and any(not 0 <= layer < n for layer in layers):
        raise ConfigError(f"config key '{key}': layer {max(layers)} is out of range for {model!r}, which has "
                          f"{n} layer{'s' if n != 1 else ''} (0..{n - 1})")


def resolve(config: dict) -> dict:
    """The effective config: ``smoke_config`` merged in when ``smoke`` is true, bookkeeping keys dropped.

    Also checks what the schema cannot: smoke only at the paper scale, every model name registered (the models of
    every replication: the config keys its declaration names), ICL token indices inside the context.
    """
    from mechrepro import replications
    from mechrepro.models.registry import REGISTRY

    cfg = dict(config)
    smoke, over = cfg.pop("smoke", False), cfg.pop("smoke_config", {}) or {}
    if smoke:
        if cfg["scale"] != "paper":
            raise ConfigError("config key 'smoke': only the paper scale has a smoke run (use scale=paper)")
        cfg = _deep_merge(cfg, over)
    cfg["smoke"] = bool(smoke)
    ih, caps = cfg["induction_heads"], cfg["capabilities"]
    used = {"capabilities.models": caps["models"], **replications.model_keys(cfg)}
    names = {"toy_models": cfg["toy_models"], "capabilities.required": list(caps["required"]), **used}
    for key, models in names.items():
        for m in models:
            if m not in REGISTRY:
                raise ConfigError(f"config key '{key}': unknown model {m!r}; registered: {', '.join(sorted(REGISTRY))}")
    for key, models in used.items():
        for m in models:
            if REGISTRY[m].kind == "toy" and m not in cfg["toy_models"]:
                raise ConfigError(f"config key '{key}': toy model {m!r} is not in toy_models")
    for m in caps["required"]:
        if m not in caps["models"]:
            raise ConfigError(f"config key 'capabilities.required': {m!r} is not in capabilities.models")
    for m in cfg["toy_models"]:
        if REGISTRY[m].kind == "toy" and REGISTRY[m].corpus not in cfg["corpus"]:
            raise ConfigError(f"config key 'toy_models': {m!r} trains on corpus {REGISTRY[m].corpus!r}, "
                              f"which config 'corpus' does not define ({', '.join(cfg['corpus'])})")
    mono = cfg["monosemanticity"]
    _check_layers("monosemanticity.hook", mono["model"], [int(mono["hook"].split(".")[1])])
    if "pretrained" in mono:
        _check_layers("monosemanticity.pretrained.layers", mono["pretrained"]["model"], mono["pretrained"]["layers"])
    for m in ih["phase_models"]:
        n_ctx = cfg["corpus"][REGISTRY[m].corpus]["n_ctx"] if REGISTRY[m].kind == "toy" else 0
        if not ih["icl_early"] < ih["icl_late"] < n_ctx:
            raise ConfigError(f"config key 'induction_heads.icl_late': need icl_early < icl_late < the n_ctx "
                              f"({n_ctx}) of phase model {m!r}'s corpus")
    return cfg
