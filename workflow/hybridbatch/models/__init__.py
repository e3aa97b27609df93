"""Encoders and where base models come from: sentence-transformers, dual encoders, image
towers, the image-text model."""
