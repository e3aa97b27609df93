"""The stages `python -m hybridbatch <stage>` runs: each is one function of one module, with
the names of its path arguments. Standard library only: the Snakemake rules read it to
declare each stage's code (artifacts/fingerprints.py)."""

OUTPUTS = ("out", "tables", "plots", "record")
# stage name -> (module, function, names of its path arguments after params; outputs are
# those in OUTPUTS). Modules are imported only for the stage that runs.
STAGES = {
    "download": ("corpora", "download", ["out"]),
    "prepare": ("corpora.prepare", "prepare", ["raw", "out"]),
    "pairs": ("pairs.build", "build_pairs", ["corpus", "out"]),
    "batches": ("batches.text", "build_batches", ["pairs", "out"]),
    "base-model": ("models.base_model", "build_base_model", ["corpus", "out"]),
    "train": ("train.text", "train", ["base", "batches", "out"]),
    "image-features": ("models.image_towers", "image_features", ["corpus", "raw", "model", "out"]),
    "image-text-batches": ("batches.image_text", "build_image_text_batches", ["corpus", "out"]),
    "train-lit": ("train.image_text", "train_lit", ["base", "features", "batches", "out"]),
    "evaluate-image-text": ("evaluate.image_text", "evaluate_image_text", ["model", "features", "corpus", "out"]),
    "embed-shard": ("evaluate.embed", "embed_shard", ["model", "corpus", "out"]),
    "embed": ("evaluate.embed", "embed_and_index", ["model", "corpus", "shards", "out"]),
    "search": ("evaluate.text", "search", ["embeddings", "corpus", "out"]),
    "evaluate": ("evaluate.text", "evaluate", ["run", "corpus", "out"]),
    "tables": ("report.tables", "make_tables", ["metrics", "image_text_metrics", "tables", "plots", "record"]),
}
TOOLS = {"audit": "report.audit"}  # commands over a results tree that a rule runs (audit, runs)


def module_of(command: str) -> str:
    """The module that runs a stage or tool."""
    return STAGES[command][0] if command in STAGES else TOOLS[command]
