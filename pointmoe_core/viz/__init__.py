"""Palettes, offscreen renders and overlays for clouds, labels and expert routing."""
