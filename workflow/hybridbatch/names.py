"""Names the workflow and the stages share (splits, settings, summary columns, file
names). Standard library only: the Snakemake driver imports this and config.py, so
parsing the workflow needs snakemake and PyYAML alone, not torch, FAISS or pandas."""

from __future__ import annotations

ZERO_SHOT = "zero-shot"  # the strategy name of an untrained model
SPLITS = ("train", "test")
IMAGE_LANG = "image"  # the `lang` of image vectors in stored embeddings
SETTINGS = ("mono", "cross", "multi")  # the text track's LAReQA settings
SUMMARY_COLUMNS = ["corpus", "model", "strategy", "alpha", "seed", "setting", "metric", "value"]
RUN_KEYS = SUMMARY_COLUMNS[:5]  # corpus, model, strategy, alpha, seed
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def heatmap_name(run_key: tuple) -> str:
    corpus, model, strategy, _, seed = run_key
    suffix = "" if strategy == ZERO_SHOT else f"-s{seed}"
    return f"heatmap_{corpus}_{model}_{strategy}{suffix}.png"
