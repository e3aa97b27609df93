"""search + evaluate on a small LAReQA corpus with random embeddings, against pytrec_eval
on full rankings."""

import faiss
import numpy as np
import pandas as pd
import pytest
import pytrec_eval

from hybridbatch import evaluation, schema
from hybridbatch.indexing import build_index
from hybridbatch.vectors import POOLED, candidate_rows, embeddings_table
from test_lareqa import write_fixture

METRICS = {"recall_at": [1, 2, 5], "ndcg_at": 3, "mrr_at": 3}
DESCRIPTOR = {"corpus": "fixture", "model": "random", "strategy": "zero-shot", "alpha": None, "seed": None}


@pytest.fixture
def evaluated(tmp_path):
    from hybridbatch.corpora import lareqa

    rng = np.random.default_rng(0)
    for lang, n in (("en", 9), ("de", 7), ("zh", 8)):
        sentences = [f"{lang} sentence {i}." for i in range(n)]
        starts = np.cumsum([0] + [len(s) + 1 for s in sentences])
        ids = [f"q{i}" for i in range(6)] if lang != "zh" else ["q0", "q1", "q2"]  # zh lacks q3..q5
        write_fixture(tmp_path, lang, sentences, {qid: int(starts[rng.integers(n)]) for qid in ids})
    queries, passages, qrels = lareqa.load(tmp_path, ["en", "de", "zh"])
    corpus, emb = tmp_path / "corpus", tmp_path / "emb"
    schema.write_parquet(qrels, corpus / "qrels.parquet", schema.QRELS)
    q = rng.standard_normal((len(queries), 8)).astype(np.float32)
    p = rng.standard_normal((len(passages), 8)).astype(np.float32)
    schema.write_table(embeddings_table(queries.qid.tolist(), queries.lang.tolist(), q), emb / "queries.parquet")
    schema.write_table(embeddings_table(passages.pid.tolist(), passages.lang.tolist(), p), emb / "passages.parquet")
    langs = passages.lang.to_numpy()
    for lang in ["en", "de", "zh", POOLED]:
        faiss.write_index(build_index(p[candidate_rows(langs, lang)], "Flat"), str(emb / f"index-{lang}.faiss"))
    evaluation.search({"top_k": 3}, emb, corpus, tmp_path / "runs")
    summary = evaluation.evaluate({**METRICS, "descriptor": DESCRIPTOR}, tmp_path / "runs", corpus, tmp_path / "metrics")
    return queries, passages, qrels, q, p, tmp_path, summary


def test_metrics_equal_pytrec_eval_on_full_rankings(evaluated):
    queries, passages, qrels, q, p, root, _ = evaluated
    per_query = pd.read_parquet(root / "metrics/per_query.parquet")
    relevant = qrels.groupby("qid").pid.apply(set).to_dict()
    measures = {"map", "recall_1", "recall_2", "recall_5", "ndcg_cut_3"}
    checked = 0
    for setting, lq, lc in [("mono", "en", "en"), ("cross", "de", "zh"), ("cross", "zh", "en"), ("multi", "de", POOLED)]:
        rows = np.flatnonzero(queries.lang == lq)
        columns = candidate_rows(passages.lang.to_numpy(), lc)
        run = {queries.qid[r]: {passages.pid[c]: float(q[r] @ p[c]) for c in columns} for r in rows}
        gold = {qid: {pid: 1 for pid in relevant[qid] & set(passages.pid[columns])} for qid in run}
        gold = {qid: rel for qid, rel in gold.items() if rel}
        reference = pytrec_eval.RelevanceEvaluator(gold, measures).evaluate({k: run[k] for k in gold})
        ours = per_query[(per_query.setting == setting) & (per_query.candidate_lang == lc)].set_index("qid")
        for qid, values in reference.items():
            assert ours.loc[qid, "map"] == pytest.approx(values["map"], abs=1e-6)
            assert ours.loc[qid, "ndcg@3"] == pytest.approx(values["ndcg_cut_3"], abs=1e-6)
            for k in METRICS["recall_at"]:
                assert ours.loc[qid, f"recall@{k}"] == pytest.approx(values[f"recall_{k}"], abs=1e-6)
            checked += 1
    assert checked > 10


def test_queries_without_a_relevant_candidate_are_skipped_and_counted(evaluated):
    root = evaluated[5]
    by_language = pd.read_parquet(root / "metrics/by_language.parquet").set_index(["setting", "query_lang", "candidate_lang"])
    assert by_language.loc[("cross", "en", "zh"), "skipped"] == 3  # q3..q5 have no zh gold
    assert by_language.loc[("cross", "en", "zh"), "queries"] == 3
    assert by_language.loc[("cross", "en", "de"), "skipped"] == 0
    assert by_language.loc[("multi", "zh", POOLED), "queries"] == 3


def test_summary_is_the_macro_average_of_the_language_blocks(evaluated):
    root, summary = evaluated[5], evaluated[6]
    by_language = pd.read_parquet(root / "metrics/by_language.parquet")
    cross_map = summary[(summary.setting == "cross") & (summary.metric == "map")].value.item()
    assert cross_map == pytest.approx(by_language[by_language.setting == "cross"]["map"].mean())
    assert len(by_language[by_language.setting == "cross"]) == 6
    bias = summary[summary.metric == "language_bias"].value.item()
    assert bias == pytest.approx(by_language[by_language.setting == "multi"].rank_distance.mean())
