"""Datasets, transforms and generated scenes that share one sample layout."""
