"""Names the workflow and the stages share (splits, settings, summary columns, artifact
paths). Standard library only: the Snakemake driver imports this and config.py, so
parsing the workflow needs snakemake and PyYAML alone, not torch, FAISS or pandas."""

from __future__ import annotations

import re
from dataclasses import dataclass

ZERO_SHOT = "zero-shot"  # the strategy name of an untrained model
DUAL_ENCODER = "dual-encoder"  # the model source (and image tower) kind of pretrained CLIP-family models
SPLITS = ("train", "test")
GROUPS = "groups.parquet"  # a corpus's items with their near-duplicate group and split, beside the splits
IMAGE_LANG = "image"  # the `lang` of image vectors in stored embeddings
SETTINGS = ("mono", "cross", "multi")  # the text track's LAReQA settings
SUMMARY_COLUMNS = ["corpus", "model", "strategy", "alpha", "seed", "setting", "metric", "value"]
RUN_KEYS = SUMMARY_COLUMNS[:5]  # corpus, model, strategy, alpha, seed
MAP = "map"  # the metric names of per-query tables and summary.csv
RANK_DISTANCE = "rank_distance"  # per query; its mean over a pooled setting's blocks is LANGUAGE_BIAS
LANGUAGE_BIAS = "language_bias"


def recall(k: int) -> str:
    return f"recall@{k}"


def ndcg(k: int) -> str:
    return f"ndcg@{k}"


def mrr(k: int) -> str:
    return f"mrr@{k}"


def metric_names(recall_at: list[int], ndcg_at: int, mrr_at: int) -> list[str]:
    """The per-query metric columns an evaluation computes, in order."""
    return [MAP, *(recall(k) for k in recall_at), ndcg(ndcg_at), mrr(mrr_at)]


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def is_dual_encoder(model: dict) -> bool:
    """Whether a `models` entry is a pretrained dual encoder (CLIP, SigLIP, SigLIP 2)."""
    return model["source"]["kind"] == DUAL_ENCODER


def heatmap_name(run_key: tuple) -> str:
    corpus, model, strategy, _, seed = run_key
    suffix = "" if strategy == ZERO_SHOT else f"-s{seed}"
    return f"heatmap_{corpus}_{model}_{strategy}{suffix}.png"


@dataclass(frozen=True)
class Variant:
    """A text-track model state to evaluate: the untrained base, or one trained cell of the
    grid. `name` is its directory name; `parse` reads one back."""

    trainset: str | None = None
    strategy: str | None = None
    seed: int | None = None

    @property
    def name(self) -> str:
        return ZERO_SHOT if self.strategy is None else f"{self.trainset}.{self.strategy}.s{self.seed}"

    @classmethod
    def parse(cls, name: str) -> Variant:
        if name == ZERO_SHOT:
            return cls()
        trainset, strategy, seed = name.split(".")
        return cls(trainset, strategy, int(seed.removeprefix("s")))


PLATEAU = "plateau"  # a curve point trained until its development Recall@1 stops improving


@dataclass(frozen=True)
class CurvePoint:
    """An image-text strategy at a training budget: `budget` batches with a schedule of
    their own, PLATEAU (until its development Recall@1 stops improving), or None (the grid's
    `steps` x the strategy's step factor). `name` is the label runs carry as their
    strategy (`mixed@256`, `mixed@plateau`, `mixed`); `parse` reads one back."""

    strategy: str
    budget: int | str | None = None

    @property
    def name(self) -> str:
        return self.strategy if self.budget is None else f"{self.strategy}@{self.budget}"

    @classmethod
    def parse(cls, name: str) -> CurvePoint:
        strategy, _, budget = name.partition("@")
        if not budget:
            return cls(strategy)
        return cls(strategy, budget if budget == PLATEAU else int(budget))


@dataclass(frozen=True)
class ImageTextRun:
    """An evaluated image-text run: a strategy trained with a seed, or an untrained dual
    encoder (`zero_shot`, its model). `name` is its directory name; `parse` reads one back."""

    strategy: str | None = None
    seed: int | None = None
    zero_shot: str | None = None

    @property
    def name(self) -> str:
        return f"{ZERO_SHOT}.{self.zero_shot}" if self.zero_shot else f"{self.strategy}.s{self.seed}"

    @classmethod
    def parse(cls, name: str) -> ImageTextRun:
        if name.startswith(f"{ZERO_SHOT}."):
            return cls(zero_shot=name.removeprefix(f"{ZERO_SHOT}."))
        strategy, seed = name.rsplit(".s", 1)
        return cls(strategy, int(seed))


# beside a download's output directory, where a failed job's cleanup does not reach:
# the bytes fetched so far, and files whose hash was wrong (no artifact's content)
PARTIAL, REJECTED = ".partial", ".rejected"

RESULTS = "results"
# every artifact directory under RESULTS, its wildcards in braces (the rules' one source of paths)
ARTIFACTS = {
    "import": "imports/{name}",
    "raw": "corpora/{corpus}/raw",
    "corpus": "corpora/{corpus}",
    "features": "features/{tower}/{corpus}",
    "pairs": "train/{trainset}",
    "batches": "batches/{trainset}/{strategy}/s{seed}",
    "image_text_batches": "image_text/batches/{corpus}/{strategy}/s{seed}",
    "model": "models/{model}/{variant}",
    "caption_states": "image_text/caption_states/{corpus}/{split}",
    "image_text_model": "image_text/models/{corpus}/{run}",
    "embedding_shard": "embedding_shards/{model}/{variant}/{corpus}/{shard}-of-{shards}",
    "embeddings": "embeddings/{model}/{variant}/{corpus}",
    "runs": "runs/{model}/{variant}/{corpus}",
    "metrics": "metrics/{model}/{variant}/{corpus}",
    "image_text_metrics": "image_text/metrics/{corpus}/{run}",
    "tables": "tables",
    "plots": "plots",
    "audit": "audit",
}


def artifact(kind: str, *parts: str, **fields) -> str:
    """`results/<the kind's directory>[/parts]`, wildcards named in `fields` filled in and
    the others left as Snakemake wildcards: artifact("model", variant=ZERO_SHOT) is
    results/models/{model}/zero-shot."""
    template = "/".join([RESULTS, ARTIFACTS[kind], *parts])
    return re.sub(r"\{(\w+)\}", lambda m: str(fields.get(m.group(1), m.group(0))), template)


def log_file(rule: str, name: str) -> str:
    return f"{RESULTS}/logs/{rule}/{name}.log"


def benchmark_file(rule: str, name: str) -> str:
    return f"{RESULTS}/benchmarks/{rule}/{name}.tsv"
