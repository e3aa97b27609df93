"""Evaluation speed on full XQuAD-R (11 languages: 11 mono + 110 cross + 11 multi settings,
13,090 queries, 13,014 candidates) from stored embeddings, against pytrec_eval.

    .venv/bin/python benchmarks/evaluation_speed.py [--xquad-r ../shared/corpora/xquad-r]

Embeddings are synthetic (384-d, seeded; a query is its item's vector plus noise and
gold candidates lean towards it) so the benchmark needs no model. Timed:
  ours       search (FAISS top-100 + exact rank of every gold candidate) and evaluate
             (mAP, R@1/5/10/100, nDCG@10, MRR@10, rank distance, per query)
  reference  pytrec_eval on the same run files (dicts built from them, then evaluated)
The cutoff metrics (R@k, nDCG@10, MRR@10) of both are compared; mAP differs by design
(pytrec_eval sees a truncated run; ours uses the exact gold ranks).
Goal (issue "Evaluation exactly as LAReQA"): under 30 s on 2 cores, faster than pytrec_eval.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "workflow"))
from hybridbatch.artifacts import schema
from hybridbatch.artifacts.vectors import POOLED, embeddings_table  # noqa: E402
from hybridbatch.corpora import lareqa  # noqa: E402
from hybridbatch.evaluate import text as evaluation

LANGS = ["ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh"]
PARAMS = {"top_k": 100}
METRICS = {"recall_at": [1, 5, 10, 100], "ndcg_at": 10, "mrr_at": 10}
DESCRIPTOR = {"corpus": "xquad-r", "model": "synthetic", "strategy": "zero-shot", "alpha": None, "seed": None}


def synthetic_embeddings(queries: pd.DataFrame, passages: pd.DataFrame, qrels: pd.DataFrame, dim: int = 384):
    rng = np.random.default_rng(0)
    items = {item: i for i, item in enumerate(sorted(queries.item_id.unique()))}
    item_vectors = rng.standard_normal((len(items), dim)).astype(np.float32)
    q = item_vectors[queries.item_id.map(items)] + 1.5 * rng.standard_normal((len(queries), dim)).astype(np.float32)
    p = rng.standard_normal((len(passages), dim)).astype(np.float32)
    gold = qrels.merge(queries[["qid", "item_id"]], on="qid").drop_duplicates("pid")
    rows = passages.reset_index().set_index("pid").loc[gold.pid, "index"].to_numpy()
    p[rows] += item_vectors[gold.item_id.map(items)]
    return [v / np.linalg.norm(v, axis=1, keepdims=True) for v in (q, p)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--xquad-r", default=str(Path(__file__).resolve().parents[2] / "shared/corpora/xquad-r"))
    args = parser.parse_args()
    queries, passages, qrels = lareqa.load(args.xquad_r, LANGS)
    print(f"XQuAD-R: {len(queries):,} queries, {len(passages):,} candidates, {len(qrels):,} qrels")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        schema.write_parquet(qrels, tmp / "corpus/qrels.parquet", schema.QRELS)
        q, p = synthetic_embeddings(queries, passages, qrels)
        schema.write_table(
            embeddings_table(queries.qid.tolist(), queries.lang.tolist(), q), tmp / "emb/queries.parquet"
        )
        schema.write_table(
            embeddings_table(passages.pid.tolist(), passages.lang.tolist(), p), tmp / "emb/passages.parquet"
        )

        started = time.perf_counter()
        evaluation.search(PARAMS, tmp / "emb", tmp / "corpus", tmp / "runs")
        searched = time.perf_counter()
        evaluation.evaluate({**METRICS, "descriptor": DESCRIPTOR}, tmp / "runs", tmp / "corpus", tmp / "metrics")
        ours_search, ours_eval = searched - started, time.perf_counter() - searched

        import pytrec_eval

        started = time.perf_counter()
        relevant = qrels.groupby("qid").pid.agg(set).to_dict()
        measures = {"recall_1", "recall_5", "recall_10", "recall_100", "ndcg_cut_10", "recip_rank", "map"}
        reference = []
        for setting in evaluation.SETTINGS:
            run = pd.read_parquet(tmp / "runs" / f"{setting}.parquet")
            run["key"] = run.qid + "\t" + run.candidate_lang
            for (candidate_lang), block in run.groupby("candidate_lang"):
                pids = set(passages.pid[passages.lang == candidate_lang]) if candidate_lang != POOLED else None
                top = block[block["rank"] <= PARAMS["top_k"]]
                runs = {key: dict(zip(g.pid, g.score.astype(float))) for key, g in top.groupby("key")}
                qrels_block = {
                    key: {pid: 1 for pid in relevant[key.split("\t")[0]] if pids is None or pid in pids} for key in runs
                }
                qrels_block = {key: value for key, value in qrels_block.items() if value}
                scores = pytrec_eval.RelevanceEvaluator(qrels_block, measures).evaluate(
                    {k: runs[k] for k in qrels_block}
                )
                reference += [
                    (setting, *key.split("\t"), v["recall_10"], v["ndcg_cut_10"]) for key, v in scores.items()
                ]
        reference_time = time.perf_counter() - started
        ours = pd.read_parquet(tmp / "metrics/per_query.parquet")
    reference = pd.DataFrame(reference, columns=["setting", "qid", "candidate_lang", "recall@10", "ndcg@10"])
    both = ours.merge(reference, on=["setting", "qid", "candidate_lang"], suffixes=("", "_reference"))
    gap = max((both[m] - both[f"{m}_reference"]).abs().max() for m in ("recall@10", "ndcg@10"))
    print(
        f"compared {len(both):,} (query, setting) rows with pytrec_eval: max |difference| of R@10, nDCG@10 = {gap:.2e}"
    )
    total = ours_search + ours_eval
    print(f"ours: search {ours_search:.1f} s + evaluate {ours_eval:.1f} s = {total:.1f} s (goal < 30 s)")
    print(f"pytrec_eval on the same runs: {reference_time:.1f} s")
    print(
        f"ratio pytrec_eval / ours: evaluate only {reference_time / ours_eval:.1f}x, "
        f"search + evaluate {reference_time / total:.2f}x"
    )


if __name__ == "__main__":
    main()
