"""Helpers the tests of several modules share: miracl_params, shipped_config."""

import yaml
from conftest import REPO


def miracl_params(mirror, **extra):
    hf = {
        "topics": {"repo": "miracl/miracl", "revision": "main"},
        "corpus": {"repo": "miracl/miracl-corpus", "revision": "main"},
    }
    return {"name": "miracl", "source": "miracl", "hf": hf, "split": "dev", "mirror": mirror and str(mirror),
            "languages": ["de", "sw"], "test_fraction": 1.0, "split_seed": 0, **extra}  # fmt: skip


def shipped_config(*overlays) -> dict:
    """config.yaml with overlays (paths; relative ones in the repository) merged over it in
    order, as Snakemake merges --configfile."""
    from snakemake.utils import update_config

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for overlay in filter(None, overlays):
        update_config(config, yaml.safe_load((REPO / overlay).read_text()))
    return config
