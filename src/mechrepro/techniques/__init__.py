"""Interpretability techniques, model-agnostic: they take a HookedTransformer and token batches."""
