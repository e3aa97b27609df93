"""Evaluation: embedding and indexing, one rank engine, metrics, the text and image-text settings."""
