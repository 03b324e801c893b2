"""Synthetic corpora and tokenizers for the toy scales (offline, seeded)."""
