"""Batch building: the shared sampling machinery and the text and image-text batch stages."""
