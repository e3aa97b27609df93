"""The image-text tables at the real run's size: 25 evaluated runs on XM3600 (the untrained
model and 8 strategies x 3 seeds, as config/xm3600_hybrid.yaml makes them), each with
the per-query rows the evaluate stage writes for 3,600 images and 36 languages under both
protocols (t2t-cross with English as pivot), then every table, significance test and
interval of the tables stage, with config.yaml's significance settings, beside the text
track of the last `make run` (results/metrics), as the real run's tables stage reads both.

    .venv/bin/python benchmarks/tables_scale.py               # writes under results/benchmarks/tables_scale
    .venv/bin/python benchmarks/tables_scale.py --images 400  # a quick look

The rows come from the evaluate stage's own scoring (`score_settings`) of seeded synthetic
embeddings (a caption is its image's vector plus noise), once; each run then gets its own
per-query values (recalls flipped and mAPs moved at random, seeded by run), so the
significance tests have differences to test. The tables run in a child process, whose
wall time and peak RSS are printed (the goal: under 4 GB).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "workflow"))
from hybridbatch.artifacts import schema  # noqa: E402
from hybridbatch.config import image_text_descriptor, image_text_runs  # noqa: E402
from hybridbatch.evaluate.image_text import relevant_pairs, score_settings  # noqa: E402
from hybridbatch.evaluate.metrics import summary_rows  # noqa: E402
from hybridbatch.names import metric_names  # noqa: E402


def shipped_config() -> dict:
    from snakemake.utils import update_config

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    update_config(config, yaml.safe_load((REPO / "config/xm3600_hybrid.yaml").read_text()))
    return config


def scored(images: int, languages: int, params: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    langs = ["en"] + [f"l{i:02d}" for i in range(1, languages)]
    items = [f"{i:05d}" for i in range(images)]
    captions = pd.DataFrame(
        [(f"{lang}:{item}:{c}", lang, item, "", c) for lang in langs for item in items for c in range(2)],
        columns=schema.CAPTIONS.names,
    )
    frame = pd.DataFrame({"pid": [f"image:{i}" for i in items], "item_id": items, "path": "", "sha256": ""})
    qrels = pd.DataFrame({"qid": captions.qid, "pid": "image:" + captions.item_id, "relevance": 1})
    image_vectors = rng.normal(size=(images, 64)).astype(np.float32)
    owner = pd.Series(np.arange(images), index=items)[captions.item_id].to_numpy()
    caption_vectors = image_vectors[owner] + 1.5 * rng.normal(size=(len(captions), 64)).astype(np.float32)
    normalise = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    vectors = {"caption": normalise(caption_vectors), "image": normalise(image_vectors)}
    return score_settings(captions, frame, relevant_pairs(captions, frame, qrels), vectors, params)


def write_runs(out: Path, images: int, languages: int) -> list[Path]:
    config = shipped_config()
    section = config["image_text"]
    params = section["evaluation"] | {key: config["evaluation"][key] for key in ("recall_at", "ndcg_at", "mrr_at")}
    started = time.perf_counter()
    per_query, by_language = scored(images, languages, params)
    print(f"{len(per_query):,} per-query rows a run, scored in {time.perf_counter() - started:.0f} s", flush=True)
    names = metric_names(params["recall_at"], params["ndcg_at"], params["mrr_at"])
    runs = image_text_runs(config)
    dirs = []
    for number, run in enumerate(runs):
        rng = np.random.default_rng(number)
        mine = per_query.copy()
        for column in [name for name in names if name.startswith("recall@")]:
            flip = rng.random(len(mine)) < 0.05
            mine.loc[flip, column] = 1.0 - mine.loc[flip, column]
        mine["map"] = (mine["map"] + rng.normal(0, 0.05, len(mine))).clip(0, 1)
        directory = out / "metrics" / run.name
        directory.mkdir(parents=True, exist_ok=True)
        schema.write_table(pa.Table.from_pandas(mine, preserve_index=False), directory / "per_query.parquet")
        schema.write_table(pa.Table.from_pandas(by_language, preserve_index=False), directory / "by_language.parquet")
        summary = summary_rows(by_language, names, image_text_descriptor(config, run))
        summary.to_csv(directory / "summary.csv", index=False)
        dirs.append(directory)
    return dirs


def tables(out: Path, text_metrics: Path) -> None:
    """The child: every table of the text track's runs under `text_metrics` and of the
    image-text runs under out/metrics, as the tables stage writes them."""
    from hybridbatch.report.outputs import HEADLINES, IMAGE_TEXT_HEADLINES
    from hybridbatch.report.runs import load_runs
    from hybridbatch.report.tables import write_tables

    config = shipped_config()
    params = config["significance"] | {"image_text_train_languages": config["image_text"]["train_languages"]}
    text_runs = load_runs(sorted(path.parent for path in text_metrics.rglob("per_query.parquet")), HEADLINES)
    runs = load_runs(sorted((out / "metrics").iterdir()), IMAGE_TEXT_HEADLINES)
    write_tables(params, text_runs, out / "tables", runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=3600)
    parser.add_argument("--languages", type=int, default=36)
    parser.add_argument("--out", type=Path, default=REPO / "results/benchmarks/tables_scale")
    parser.add_argument(
        "--text-metrics", type=Path, default=REPO / "results/metrics", help="the text track's runs (after make run)"
    )
    parser.add_argument("--tables-only", action="store_true", help=argparse.SUPPRESS)  # the child
    args = parser.parse_args()
    if not any(args.text_metrics.rglob("per_query.parquet")):
        sys.exit(f"{args.text_metrics}: no evaluated text runs; run `make run` first")
    if args.tables_only:
        tables(args.out, args.text_metrics)
        return
    dirs = write_runs(args.out, args.images, args.languages)
    started = time.perf_counter()
    child = [sys.executable, __file__, "--tables-only", "--out", str(args.out)]
    child += ["--text-metrics", str(args.text_metrics)]
    subprocess.run(child, check=True)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    tests = pd.read_csv(args.out / "tables" / "significance.csv")
    print(f"tables of {len(dirs)} runs ({args.images:,} images, {args.languages} languages): {seconds:.0f} s, "
          f"peak RSS {peak:.2f} GB (goal 4 GB); {len(tests)} significance tests")  # fmt: skip


if __name__ == "__main__":
    main()
