"""Every config key, given a wrong type or an out-of-range value, is rejected with a message naming it (the
schema, ``validate_config`` and ``resolve``; that Snakemake stops on them before any job starts is
``test_end_to_end.test_bad_config_stops_before_any_job``)."""

import copy
from pathlib import Path

import pytest
import yaml

from mechrepro.config import ConfigError, load_schema, resolve, validate_config

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = ROOT / "workflow/schemas/config.schema.yaml"
SCHEMA = load_schema(SCHEMA_PATH)  # with each replication's section (replications/<slug>/replication.yaml)
SCALES = ("toy", "ci", "paper")


def scale_config(scale: str) -> dict:
    cfg = yaml.safe_load((ROOT / f"workflow/config/{scale}.yaml").read_text())
    cfg["scale"] = scale
    return cfg


def leaves(obj, path=()):
    """(path, value) for every key and list item, containers included (after their contents)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from leaves(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from leaves(v, (*path, i))
    if path:
        yield path, obj


def set_at(cfg: dict, path: tuple, value) -> dict:
    cfg = copy.deepcopy(cfg)
    node = cfg
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return cfg


def wrong_type(value):
    if isinstance(value, bool):
        return "sometimes"
    if isinstance(value, int | float):
        return "lots"
    if isinstance(value, str):
        return 7
    if isinstance(value, list):
        return "not-a-list"
    return 5  # a dict


def schema_at(path: tuple) -> dict:
    """The schema node for a config path (``smoke_config.<key>`` uses the root schema of ``<key>``)."""
    if path[:1] == ("smoke_config",):
        path = path[1:]
    node = SCHEMA
    for p in path:
        if isinstance(p, int):
            node = node["items"]
        elif p in node.get("properties", {}):
            node = node["properties"][p]
        else:
            node = node["additionalProperties"]
    return node


def out_of_range(node: dict, value) -> list:
    """Values just outside the node's bounds (none if the node has no bounds)."""
    step = 1 if node.get("type") == "integer" else 0.5
    bad = []
    if "minimum" in node:
        bad.append(node["minimum"] - step)
    if "exclusiveMinimum" in node:
        bad.append(node["exclusiveMinimum"])
    if "maximum" in node:
        bad.append(node["maximum"] + step)
    if "exclusiveMaximum" in node:
        bad.append(node["exclusiveMaximum"])
    if "enum" in node:
        bad.append("not-an-option")
    if "pattern" in node:
        bad.append("no such thing!")
    if node.get("minItems") and isinstance(value, list):
        bad.append([])
    if node.get("uniqueItems") and isinstance(value, list) and value:
        bad.append([value[0], value[0]])
    if node.get("minProperties") and isinstance(value, dict):
        bad.append({})
    return bad


def rejection(cfg: dict) -> str | None:
    """The ConfigError message, or None if the config is accepted."""
    try:
        validate_config(cfg, SCHEMA_PATH)
        resolve(cfg)
    except ConfigError as err:
        return str(err)
    return None


@pytest.mark.parametrize("scale", SCALES)
def test_every_key_with_a_wrong_type_is_rejected_by_name(scale):
    base, problems, n = scale_config(scale), [], 0
    for path, value in leaves(base):
        if path == ("scale",):
            continue
        key, n = ".".join(map(str, path)), n + 1
        msg = rejection(set_at(base, path, wrong_type(value)))
        if msg is None or f"'{key}'" not in msg:
            problems.append(f"{key} = {wrong_type(value)!r}: {msg or 'accepted'}")
    assert n > 100 and not problems, "\n".join(problems)


@pytest.mark.parametrize("scale", SCALES)
def test_every_bounded_key_out_of_range_is_rejected_by_name(scale):
    base, problems, n = scale_config(scale), [], 0
    for path, value in leaves(base):
        if path == ("scale",):
            continue
        key = ".".join(map(str, path))
        for bad in out_of_range(schema_at(path), value):
            n += 1
            msg = rejection(set_at(base, path, bad))
            if msg is None or f"'{key}" not in msg:
                problems.append(f"{key} = {bad!r}: {msg or 'accepted'}")
    assert n > 50 and not problems, "\n".join(problems)


def test_layers_and_model_names_are_checked_against_the_model():
    cfg = set_at(scale_config("ci"), ("monosemanticity", "hook"), "blocks.3.mlp.hook_post")
    assert "'monosemanticity.hook'" in rejection(cfg) and "1 layer" in rejection(cfg)
    cfg = set_at(scale_config("paper"), ("monosemanticity", "pretrained", "layers"), [0, 12])
    assert "'monosemanticity.pretrained.layers'" in rejection(cfg) and "12" in rejection(cfg)
    cfg = set_at(scale_config("ci"), ("ioi", "model"), "gpt-7")
    msg = rejection(cfg)  # the valid names are listed
    assert "'ioi.model'" in msg and "unknown model 'gpt-7'" in msg and "gpt2-small" in msg and "toy-lm" in msg


def test_command_line_strings_become_the_schema_types_and_bad_ones_stay_to_be_named():
    """Snakemake's --config reads nested values as strings (``ioi={n_prompts: 30}`` gives "30")."""
    from mechrepro.config import coerce_cli_values

    cfg = scale_config("ci")
    cfg.update(smoke="true", seed="3")
    cfg["ioi"].update(n_prompts="30", direct_threshold="0.1", paper_circuit="false", model="toy-lm-ci")
    cfg["ioi"]["exclude_templates"] = ["paper-01"]
    coerce_cli_values(cfg, SCHEMA_PATH)
    assert (cfg["smoke"], cfg["seed"]) == (True, 3)
    assert (cfg["ioi"]["n_prompts"], cfg["ioi"]["direct_threshold"], cfg["ioi"]["paper_circuit"]) == (30, 0.1, False)
    assert cfg["ioi"]["model"] == "toy-lm-ci" and cfg["ioi"]["exclude_templates"] == ["paper-01"]  # strings stay
    cfg = scale_config("ci")
    cfg["ioi"]["n_prompts"] = "thirty"
    coerce_cli_values(cfg, SCHEMA_PATH)
    assert "'ioi.n_prompts': 'thirty' is not of type 'integer'" in rejection(cfg)
