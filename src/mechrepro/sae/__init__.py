"""Sparse autoencoders (Bricken et al. 2023) and toy models of superposition (Elhage et al. 2022)."""
