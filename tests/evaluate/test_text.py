"""The tests of `hybridbatch/evaluate/text.py`."""

import logging

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import pytrec_eval
from evaluation_helpers import DESCRIPTOR, METRICS
from lareqa_helpers import write_fixture

from hybridbatch.artifacts import schema
from hybridbatch.artifacts.vectors import POOLED, candidate_rows, embeddings_table
from hybridbatch.evaluate import text as evaluation
from hybridbatch.evaluate.embed import write_indices
from hybridbatch.names import SUMMARY_COLUMNS


@pytest.fixture
def evaluated(tmp_path):
    from hybridbatch.corpora import lareqa

    rng = np.random.default_rng(0)
    questions = {"en": range(6), "de": range(6), "zh": range(3), "es": range(3, 6)}  # zh lacks q3..q5, es q0..q2
    for lang, n in (("en", 9), ("de", 7), ("zh", 8), ("es", 5)):
        sentences = [f"{lang} sentence {i}." for i in range(n)]
        starts = np.cumsum([0] + [len(s) + 1 for s in sentences])
        write_fixture(
            tmp_path, lang, sentences, {f"q {i}": int(starts[rng.integers(n)]) for i in questions[lang]}
        )  # ids with a space
    queries, passages, qrels = lareqa.load(tmp_path, ["en", "de", "zh", "es"])
    corpus, emb = tmp_path / "corpus", tmp_path / "emb"
    schema.write_parquet(qrels, corpus / "qrels.parquet", schema.QRELS)
    schema.write_parquet(queries, corpus / "queries.parquet", schema.QUERIES)
    q = rng.standard_normal((len(queries), 8)).astype(np.float32)
    p = rng.standard_normal((len(passages), 8)).astype(np.float32)
    schema.write_table(embeddings_table(queries.qid.tolist(), queries.lang.tolist(), q), emb / "queries.parquet")
    schema.write_table(embeddings_table(passages.pid.tolist(), passages.lang.tolist(), p), emb / "passages.parquet")
    evaluation.search({"top_k": 3}, emb, corpus, tmp_path / "runs")
    summary = evaluation.evaluate(
        {**METRICS, "descriptor": DESCRIPTOR}, tmp_path / "runs", corpus, tmp_path / "metrics"
    )
    return queries, passages, qrels, q, p, tmp_path, summary


def test_metrics_equal_pytrec_eval_on_full_rankings(evaluated):
    queries, passages, qrels, q, p, root, _ = evaluated
    per_query = pd.read_parquet(root / "metrics/per_query.parquet")
    relevant = qrels.groupby("qid").pid.apply(set).to_dict()
    measures = {"map", "recall_1", "recall_2", "recall_5", "ndcg_cut_3"}
    checked = 0
    for setting, lq, lc in [
        ("mono", "en", "en"),
        ("cross", "de", "zh"),
        ("cross", "zh", "en"),
        ("multi", "de", POOLED),
    ]:
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


def brute_force_summary(queries, passages, qrels, q, p) -> dict[tuple[str, str], float]:
    """Each setting's macro averages from the score matrix alone: pytrec_eval's per-query
    values on full rankings, averaged over the queries with a relevant candidate in each
    (query language, candidate set) block, then over the blocks that have such queries;
    language bias: worst minus best rank of a query's relevant candidates when pooled."""
    relevant = qrels.groupby("qid").pid.apply(set).to_dict()
    langs = sorted(set(queries.lang))
    settings = {
        "mono": [(lang, [lang]) for lang in langs],
        "cross": [(lq, [lc]) for lq in langs for lc in langs if lq != lc],
        "multi": [(lang, langs) for lang in langs],
    }
    measures = {"map", "recall_1", "recall_2", "recall_5", "ndcg_cut_3"}
    names = {
        "map": "map",
        "recall_1": "recall@1",
        "recall_2": "recall@2",
        "recall_5": "recall@5",
        "ndcg_cut_3": "ndcg@3",
    }
    expected = {}
    for setting, blocks in settings.items():
        block_means = []
        for lq, candidate_langs in blocks:
            columns = np.flatnonzero(passages.lang.isin(candidate_langs).to_numpy())
            run, gold, bias = {}, {}, {}
            for row in np.flatnonzero(queries.lang == lq):
                qid = queries.qid[row]
                scores = q[row] @ p[columns].T
                found = {passages.pid[c]: 1 for c in columns if passages.pid[c] in relevant.get(qid, ())}
                if not found:
                    continue
                run[qid] = {passages.pid[c]: float(s) for c, s in zip(columns, scores)}
                gold[qid] = found
                ranks = np.flatnonzero(np.isin(passages.pid[columns[np.argsort(-scores)]], list(found))) + 1
                bias[qid] = ranks.max() - ranks.min()
                best = ranks.min()
                run[qid]["mrr"] = 1 / best if best <= 3 else 0.0  # MRR@3, kept apart below
            if not gold:
                continue
            mrr = {qid: run[qid].pop("mrr") for qid in run}
            values = pd.DataFrame(pytrec_eval.RelevanceEvaluator(gold, measures).evaluate(run)).T.rename(columns=names)
            values["mrr@3"], values["language_bias"] = pd.Series(mrr), pd.Series(bias)
            block_means.append(values.mean())
        for name, value in pd.DataFrame(block_means).mean().items():
            if name != "language_bias" or setting == "multi":
                expected[setting, name] = value
    return expected


def test_summary_equals_macro_averages_recomputed_from_the_scores(evaluated):
    """summary.csv against an independent recomputation: a per-block aggregate other than
    the mean of the block's queries, or a macro average over the wrong unit, fails here."""
    queries, passages, qrels, q, p, _, summary = evaluated
    expected = brute_force_summary(queries, passages, qrels, q, p)
    found = summary.set_index(["setting", "metric"]).value
    assert sorted(found.index) == sorted(expected) and len(expected) == 3 * 6 + 1
    for key, value in expected.items():
        assert found[key] == pytest.approx(value, abs=1e-9), key


def test_per_query_rows_carry_the_item_of_their_query(evaluated):
    """The significance unit: a query's item is the corpus's item_id (one per question,
    shared by its translations), not the query itself."""
    queries, root = evaluated[0], evaluated[5]
    per_query = pd.read_parquet(root / "metrics/per_query.parquet")
    item_of = dict(zip(queries.qid, queries.item_id))
    assert per_query.item_id.tolist() == [item_of[qid] for qid in per_query.qid]
    assert per_query.item_id.nunique() == 6 < per_query.qid.nunique()


def test_evaluate_writes_its_three_files_in_their_formats(evaluated):
    """summary.csv holds the returned summary; the Parquet files have exactly their columns
    and types (query counts as integers), with no index column."""
    root, summary = evaluated[5], evaluated[6]
    written = pd.read_csv(root / "metrics/summary.csv")
    assert list(written.columns) == list(summary.columns) == SUMMARY_COLUMNS
    columns = ["corpus", "model", "strategy", "setting", "metric", "value"]
    pd.testing.assert_frame_equal(written[columns], summary[columns])
    assert written[["alpha", "seed"]].isna().all().all()
    names = ["map", "recall@1", "recall@2", "recall@5", "ndcg@3", "mrr@3"]
    per_query = pq.read_schema(root / "metrics/per_query.parquet")
    assert per_query.names == [
        "item_id",
        "n_relevant",
        *names,
        "rank_distance",
        "qid",
        "query_lang",
        "candidate_lang",
        "setting",
    ]
    assert per_query.field("rank_distance").type == pa.float64() and per_query.field("n_relevant").type == pa.int64()
    by_language = pq.read_schema(root / "metrics/by_language.parquet")
    assert by_language.names == [
        "query_lang",
        "candidate_lang",
        *names,
        "rank_distance",
        "queries",
        "skipped",
        "setting",
    ]
    assert by_language.field("queries").type == pa.int64() == by_language.field("skipped").type


def test_a_run_without_any_relevant_candidate_is_an_error_naming_it(evaluated, tmp_path):
    root = evaluated[5]
    for setting in evaluation.SETTINGS:
        run = pq.read_table(root / "runs" / f"{setting}.parquet")
        schema.write_table(run.filter(pc.equal(run["rank"], 0)), tmp_path / "empty" / f"{setting}.parquet")
    with pytest.raises(schema.SchemaError, match=f"{tmp_path / 'empty'}: no run has a query with a relevant candidate"):
        evaluation.evaluate({**METRICS, "descriptor": DESCRIPTOR}, tmp_path / "empty", root / "corpus", tmp_path / "m")


def test_queries_without_a_relevant_candidate_are_skipped_and_counted(evaluated):
    root = evaluated[5]
    by_language = pd.read_parquet(root / "metrics/by_language.parquet").set_index(
        ["setting", "query_lang", "candidate_lang"]
    )
    assert by_language.loc[("cross", "en", "zh"), "skipped"] == 3  # q3..q5 have no zh gold
    assert by_language.loc[("cross", "en", "zh"), "queries"] == 3
    assert by_language.loc[("cross", "en", "de"), "skipped"] == 0
    assert by_language.loc[("multi", "zh", POOLED), "queries"] == 3


def test_a_block_where_no_query_has_a_relevant_candidate_stays_visible(evaluated):
    root, summary = evaluated[5], evaluated[6]
    by_language = pd.read_parquet(root / "metrics/by_language.parquet").set_index(
        ["setting", "query_lang", "candidate_lang"]
    )
    for block in [("cross", "es", "zh"), ("cross", "zh", "es")]:  # es holds q3..q5, zh q0..q2
        assert by_language.loc[block, "queries"] == 0 and by_language.loc[block, "skipped"] == 3
        assert np.isnan(by_language.loc[block, "map"])
    cross = by_language.loc["cross"]
    assert summary[(summary.setting == "cross") & (summary.metric == "map")].value.item() == pytest.approx(
        cross["map"][cross.queries > 0].mean()
    )


def test_summary_is_the_macro_average_of_the_language_blocks(evaluated):
    root, summary = evaluated[5], evaluated[6]
    by_language = pd.read_parquet(root / "metrics/by_language.parquet")
    cross_map = summary[(summary.setting == "cross") & (summary.metric == "map")].value.item()
    assert cross_map == pytest.approx(by_language[by_language.setting == "cross"]["map"].mean())
    assert len(by_language[by_language.setting == "cross"]) == 12
    bias = summary[summary.metric == "language_bias"].value.item()
    assert bias == pytest.approx(by_language[by_language.setting == "multi"].rank_distance.mean())


@pytest.mark.parametrize("factory, tolerance", [("HNSW32", 0.02), ("IVF4,Flat", 0.25)])
def test_approximate_indices_never_leak_a_minus_one_and_stay_near_exact(evaluated, factory, tolerance):
    """FAISS pads short result lists with -1: no such label may become a pid. Ranks come from
    the index, then the rest in exact order. IVF4 probes 1 of 4 lists here, hence its tolerance."""
    queries, passages, qrels, q, p, root, exact_summary = evaluated
    emb = root / "emb"
    assert write_indices(emb / "passages.parquet", factory, emb) == ["de", "en", "es", "zh", POOLED]
    evaluation.search({"top_k": 3}, emb, root / "corpus", root / "runs-approx")
    for setting in evaluation.SETTINGS:
        run = pd.read_parquet(root / f"runs-approx/{setting}.parquet")
        assert run.pid.isin(passages.pid).all()
        assert not run.duplicated(["qid", "candidate_lang", "rank"]).any()
        assert not run.duplicated(["qid", "candidate_lang", "pid"]).any()
    if factory.startswith("IVF"):  # the index's own lists, not an exact search: some are short
        exact_mono, approx_mono = (pd.read_parquet(root / run / "mono.parquet") for run in ("runs", "runs-approx"))
        assert (approx_mono["rank"] <= 3).sum() < (exact_mono["rank"] <= 3).sum()
    summary = evaluation.evaluate(
        {**METRICS, "descriptor": DESCRIPTOR}, root / "runs-approx", root / "corpus", root / "m2"
    )
    merged = summary.merge(exact_summary, on=["setting", "metric"])
    bounded = merged[merged.metric != "language_bias"]
    assert (bounded.value_x - bounded.value_y).abs().max() <= tolerance


def test_a_monolingual_corpus_reports_mono_only(tmp_path, caplog):
    """MIRACL-like qrels (relevant passages only in the query's language): no cross, multi or bias."""
    rng = np.random.default_rng(1)
    corpus, emb = tmp_path / "corpus", tmp_path / "emb"
    queries = pd.DataFrame(
        {"qid": [f"{l}:{i}" for l in ("en", "de") for i in range(4)], "lang": ["en"] * 4 + ["de"] * 4}
    )
    queries["item_id"], queries["text"] = queries.qid, "q"
    passages = pd.DataFrame(
        {"pid": [f"{l}:p{i}" for l in ("en", "de") for i in range(6)], "lang": ["en"] * 6 + ["de"] * 6}
    )
    passages["item_id"], passages["text"] = passages.pid, "p"
    qrels = pd.DataFrame({"qid": queries.qid, "pid": [q.replace(":", ":p") for q in queries.qid], "relevance": 1})
    schema.write_parquet(queries, corpus / "queries.parquet", schema.QUERIES)
    schema.write_parquet(qrels, corpus / "qrels.parquet", schema.QRELS)
    q, p = rng.standard_normal((8, 4)).astype(np.float32), rng.standard_normal((12, 4)).astype(np.float32)
    schema.write_table(embeddings_table(queries.qid.tolist(), queries.lang.tolist(), q), emb / "queries.parquet")
    schema.write_table(embeddings_table(passages.pid.tolist(), passages.lang.tolist(), p), emb / "passages.parquet")
    with caplog.at_level(logging.INFO):
        counts = evaluation.search({"top_k": 3}, emb, corpus, tmp_path / "runs")
    assert f"{corpus}: no query has relevant candidates in two languages, so no cross setting" in caplog.text
    assert counts == {
        setting: len(pd.read_parquet(tmp_path / f"runs/{setting}.parquet")) for setting in evaluation.SETTINGS
    }
    assert counts["mono"] >= 8 * 3 and counts["cross"] == counts["multi"] == 0
    summary = evaluation.evaluate(
        {**METRICS, "descriptor": DESCRIPTOR}, tmp_path / "runs", corpus, tmp_path / "metrics"
    )
    assert set(summary.setting) == {"mono"} and "language_bias" not in set(summary.metric)
    # de queries judged against en passages only: still no query with two languages, and
    # mono de has nothing to find; en is evaluated as if the de judgments were not there
    crossed = qrels.assign(pid=[pid.replace("de:", "en:") for pid in qrels.pid])
    schema.write_parquet(crossed, corpus / "qrels.parquet", schema.QRELS)
    evaluation.search({"top_k": 3}, emb, corpus, tmp_path / "crossed-runs")
    evaluation.evaluate({**METRICS, "descriptor": DESCRIPTOR}, tmp_path / "crossed-runs", corpus, tmp_path / "crossed")
    by_language = pd.read_parquet(tmp_path / "crossed/by_language.parquet").set_index("query_lang")
    assert (by_language.loc["de", "queries"], by_language.loc["de", "skipped"]) == (0, 4)
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "crossed/per_query.parquet"),
        pd.read_parquet(tmp_path / "metrics/per_query.parquet").query("query_lang == 'en'").reset_index(drop=True),
    )


def test_judgments_of_relevance_zero_and_repeated_judgments_change_nothing(evaluated, tmp_path):
    """Relevance 0 (a judged non-relevant passage, as mMARCO's triples give) is not relevant;
    a pair judged twice (relevance 1 and 2) is one relevant candidate."""
    queries, passages, qrels, q, p, root, summary = evaluated
    extra = pd.DataFrame(
        {"qid": [queries.qid[0], qrels.qid[0]], "pid": [passages.pid[5], qrels.pid[0]], "relevance": [0, 2]}
    )
    assert not ((qrels.qid == extra.qid[0]) & (qrels.pid == extra.pid[0])).any()
    corpus = tmp_path / "corpus"
    schema.write_parquet(pd.concat([qrels, extra]), corpus / "qrels.parquet", schema.QRELS)
    schema.write_parquet(queries, corpus / "queries.parquet", schema.QUERIES)
    evaluation.search({"top_k": 3}, root / "emb", corpus, tmp_path / "runs")
    again = evaluation.evaluate({**METRICS, "descriptor": DESCRIPTOR}, tmp_path / "runs", corpus, tmp_path / "metrics")
    pd.testing.assert_frame_equal(again, summary)


def test_a_judged_passage_that_is_not_in_the_corpus_is_an_error_naming_it(evaluated, tmp_path):
    queries, passages, qrels, q, p, root, summary = evaluated
    corpus = tmp_path / "corpus"
    schema.write_parquet(
        pd.concat([qrels, pd.DataFrame({"qid": ["en:q 1"], "pid": ["xx:9"], "relevance": [1]})]),
        corpus / "qrels.parquet",
        schema.QRELS,
    )
    with pytest.raises(
        schema.SchemaError, match=rf"{corpus / 'qrels.parquet'}: pids without passages, e.g. \['xx:9'\]"
    ):
        evaluation.search({"top_k": 3}, root / "emb", corpus, tmp_path / "runs")
