"""Helpers the tests of several modules share: LANGS, PARAMS, mean_over_seeds, write_image_text_run, write_lit_model, write_metrics, write_run."""

import json
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from hybridbatch.artifacts import schema
from hybridbatch.evaluate.metrics import summary_rows
from hybridbatch.names import ZERO_SHOT

LANGS = ["de", "en", "es", "ru", "zh", "ar"]


PARAMS = {"alpha": 0.05, "permutations": 20_000, "bootstrap_samples": 4000, "seed": 0}


def write_metrics(
    out: Path, per_query: pd.DataFrame, names: list[str], corpus: str, strategy: str, alpha, seed, model: str = "m"
) -> Path:
    """per_query.parquet, by_language.parquet (means of the queries of a block) and summary.csv."""
    keys = ["setting", "query_lang", "candidate_lang"]
    by_language = per_query.groupby(keys, as_index=False)[names + ["rank_distance"]].mean()
    by_language["queries"], by_language["skipped"] = per_query.groupby(keys).size().to_numpy(), 0
    descriptor = {"corpus": corpus, "model": model, "strategy": strategy, "alpha": alpha, "seed": seed}
    out.mkdir(parents=True)
    for name, frame in (("per_query", per_query), ("by_language", by_language)):
        schema.write_table(pa.Table.from_pandas(frame, preserve_index=False), out / f"{name}.parquet")
    summary_rows(by_language, names, descriptor).to_csv(out / "summary.csv", index=False)
    return out


def write_run(
    root: Path,
    strategy: str,
    item_map: np.ndarray,
    item_bias: np.ndarray,
    alpha: float | None = 0.5,
    seed: int | None = 0,
    cross_map: np.ndarray | None = None,
    sparse_items: int = 0,
) -> Path:
    """A text run: every query (one per item and language) has its item's mAP in mono,
    multi and cross (against the next language; `cross_map` if given), and its item's rank
    distance in multi. The first `sparse_items` items have no query in half the languages."""
    if strategy == ZERO_SHOT:
        alpha = seed = None
    rows = []
    for (item, value), lang in product(enumerate(item_map), LANGS):
        if item < sparse_items and LANGS.index(lang) >= len(LANGS) // 2:
            continue
        following = LANGS[(LANGS.index(lang) + 1) % len(LANGS)]
        for setting, candidates in (("mono", lang), ("cross", following), ("multi", "all")):
            rows.append(
                {
                    "item_id": f"i{item}",
                    "qid": f"{lang}:i{item}",
                    "query_lang": lang,
                    "candidate_lang": candidates,
                    "setting": setting,
                    "map": cross_map[item] if setting == "cross" and cross_map is not None else value,
                    "rank_distance": item_bias[item] if setting == "multi" else np.nan,
                }
            )
    return write_metrics(root / f"{strategy}-{seed}", pd.DataFrame(rows), ["map"], "planted", strategy, alpha, seed)


def write_image_text_run(
    root: Path,
    strategy: str,
    seed: int,
    protocols=("all",),
    model: str = "m",
    perfect: bool = False,
    recall_at: tuple[int, ...] = (1,),
) -> Path:
    """An image-text run evaluated under `protocols` (default `all` only), with random
    per-query values (`perfect`: R@1 is 1 for every query); Recall@k beyond k=1 is random."""
    rng = np.random.default_rng(seed)
    rows = []
    for protocol, item, lang in product(protocols, range(10), LANGS[:3]):
        image, caption, other = f"image:{item}", f"{lang}:{item}:0", LANGS[(LANGS.index(lang) + 1) % 3]
        for setting, qid, query_lang, candidate_lang in (
            ("t2i", caption, lang, "image"),
            ("i2t", image, "image", lang),
            ("t2t-cross", caption, lang, other),
        ):
            rows.append(
                {
                    "item_id": str(item),
                    "qid": qid,
                    "query_lang": query_lang,
                    "candidate_lang": candidate_lang,
                    "setting": f"{setting}/{protocol}",
                    "recall@1": float(perfect or rng.random() < 0.4),
                    **{f"recall@{k}": float(rng.random() < 0.6) for k in recall_at[1:]},
                    "map": rng.random(),
                    "rank_distance": np.nan,
                }
            )
    for protocol, item in product(protocols, range(10)):
        rows.append(
            {
                "item_id": str(item),
                "qid": f"image:{item}",
                "query_lang": "image",
                "candidate_lang": "all",
                "setting": f"i2t-multi/{protocol}",
                "recall@1": 1.0,
                **{f"recall@{k}": 1.0 for k in recall_at[1:]},
                "map": rng.random(),
                "rank_distance": float(rng.integers(0, 9)),
            }
        )
    alpha, seed = (None, None) if strategy == ZERO_SHOT else (0.5, seed)
    return write_metrics(
        root / f"image-{strategy}",
        pd.DataFrame(rows),
        ["map", *(f"recall@{k}" for k in recall_at)],
        "images",
        strategy,
        alpha,
        seed,
        model,
    )


def mean_over_seeds(per_run: list[pd.DataFrame], setting: str, by: str, column: str) -> pd.Series:
    """Each group's mean of `column` in `setting`, averaged over the runs (seeds)."""
    return sum(rows[rows.setting == setting].groupby(by)[column].mean() for rows in per_run) / len(per_run)


def write_lit_model(root: Path, name: str, batch_types: list[str], saved_step: int, batch_size: int = 3) -> Path:
    """A LiT run's training.json (the examples of each batch type it was saved after) and
    training_log.csv: one row per batch trained."""
    model = root / name
    model.mkdir(parents=True)
    examples = pd.Series(batch_types[:saved_step]).value_counts() * batch_size
    summary = {"saved_step": saved_step, "examples_by_batch_type": examples.to_dict(), "development_recall_at_1": 0.5}
    (model / "training.json").write_text(json.dumps(summary))
    pd.DataFrame({"step": range(len(batch_types)), "batch_type": batch_types}).to_csv(model / "training_log.csv")
    return model
