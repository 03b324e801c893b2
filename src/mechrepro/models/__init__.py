"""Models: the registry of names, toy-model training, and one loader for every kind."""

from mechrepro.models.load import ModelUnavailableError, load_model
from mechrepro.models.registry import REGISTRY, get_spec

__all__ = ["REGISTRY", "ModelUnavailableError", "get_spec", "load_model"]
