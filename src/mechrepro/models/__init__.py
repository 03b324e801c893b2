"""Models: the registry of names, toy-model training, and one loader for every kind.

``load_model`` and ``ModelUnavailableError`` are imported on first use: the registry alone (which the workflow reads
on every snakemake command) does not need TransformerLens or torch, which take seconds to import."""

from mechrepro.models.registry import REGISTRY, get_spec

__all__ = ["REGISTRY", "ModelUnavailableError", "get_spec", "load_model"]


def __getattr__(name: str):
    if name in ("load_model", "ModelUnavailableError"):
        from mechrepro.models import load

        return getattr(load, name)
    raise AttributeError(f"module 'mechrepro.models' has no attribute {name!r}")
