"""Artifacts on disk: Parquet schemas, the hashing atomic writer, manifests, stage fingerprints, stored vectors."""
