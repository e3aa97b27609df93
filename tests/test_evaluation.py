"""search + evaluate on a small LAReQA corpus with random embeddings, against pytrec_eval
on full rankings."""

import logging

import faiss
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import pytrec_eval
from test_lareqa import write_fixture

from hybridbatch.artifacts import schema
from hybridbatch.artifacts.vectors import POOLED, CandidateBlocks, candidate_rows, embeddings_table
from hybridbatch.evaluate import ranks
from hybridbatch.evaluate import text as evaluation
from hybridbatch.evaluate.embed import write_indices
from hybridbatch.names import SUMMARY_COLUMNS


def blocks_of(vectors: np.ndarray, rows: np.ndarray, width: int) -> CandidateBlocks:
    """Blocks (first column, vectors) of the candidates vectors[rows], at most `width` each."""
    return lambda: ((lo, vectors[rows[lo : lo + width]]) for lo in range(0, len(rows), width))


METRICS = {"recall_at": [1, 2, 5], "ndcg_at": 3, "mrr_at": 3}
DESCRIPTOR = {"corpus": "fixture", "model": "random", "strategy": "zero-shot", "alpha": None, "seed": None}


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


def test_exact_top_k_of_wide_score_rows_equals_a_full_sort():
    """5,000 candidates a row (numpy's partition leaves the prefix unsorted at this size), distinct or tied."""
    rng = np.random.default_rng(1)
    for scores in (rng.random((20, 5000)).astype(np.float32), rng.integers(0, 400, size=(20, 5000)).astype(np.float32)):
        top_scores, columns = ranks.top_k_exact(scores, 50)
        order = np.lexsort((np.broadcast_to(np.arange(5000), scores.shape), -scores), axis=1)[:, :50]
        assert (columns == order).all() and (top_scores == np.take_along_axis(scores, order, axis=1)).all()


def test_exact_top_k_breaks_ties_by_column_at_the_boundary_too():
    from hybridbatch.evaluate.ranks import exact_ranks

    rng = np.random.default_rng(0)
    for _ in range(200):
        candidates = rng.integers(0, 3, size=(40, 4)).astype(np.float32)  # many duplicated vectors: ties
        scores = rng.integers(0, 3, size=(5, 4)).astype(np.float32) @ candidates.T
        top_scores, columns = ranks.top_k_exact(scores, 10)
        rows = np.repeat(np.arange(5), 10)
        assert (exact_ranks(scores, columns.ravel(), rows) == np.tile(np.arange(1, 11), 5)).all()


def run_tuples(result) -> set[tuple]:
    return set(zip(*(values.tolist() for values in result)))


@pytest.mark.parametrize("approximate", [False, True])
def test_search_in_candidate_blocks_equals_one_block_and_brute_force(approximate):
    """Scores computed block by block (any width, ties included) give the same top-k and
    the same ranks of the gold candidates as the whole score matrix at once; those ranks
    are the list's length plus the exact order of the candidates the list missed."""
    from hybridbatch.evaluate.ranks import exact_ranks

    rng = np.random.default_rng(3)
    queries = rng.integers(0, 3, size=(300, 4)).astype(np.float32)  # > QUERY_CHUNK rows: several query chunks
    candidates = rng.integers(0, 3, size=(61, 4)).astype(np.float32)  # duplicated vectors: many ties
    gold_rows = np.repeat(np.arange(300), 3)
    gold_columns = rng.integers(0, 61, size=900)
    keep = ~pd.DataFrame({"r": gold_rows, "c": gold_columns}).duplicated().to_numpy()
    gold = (gold_rows[keep], gold_columns[keep])
    index = None
    if approximate:
        index = faiss.index_factory(4, "IVF4,Flat", faiss.METRIC_INNER_PRODUCT)
        index.train(candidates)
        index.add(candidates)  # probes 1 list of 4: short lists, padded with -1
    rows = np.arange(61)
    late = gold[0] >= 2 * ranks.QUERY_CHUNK  # relevant candidates of the third query chunk only
    alone = run_tuples(
        ranks.search_block(index, queries, blocks_of(candidates, rows, 7), 61, (gold[0][late], gold[1][late]), 10)
    )
    results = [
        run_tuples(ranks.search_block(index, queries, blocks_of(candidates, rows, width), 61, gold, 10))
        for width in (61, 1, 7, 16, 1000)
    ]
    assert all(result == results[0] for result in results[1:])
    assert {row for row in alone if row[0] >= 2 * ranks.QUERY_CHUNK} == {
        row for row in results[0] if row[0] >= 2 * ranks.QUERY_CHUNK
    }
    scores = queries @ candidates.T
    ranked = {(r, c): rank for r, c, rank, _ in results[0]}
    if approximate:
        listed = index.search(queries, 10)[1]
        for r, c in zip(*gold):
            if c not in listed[r]:
                unlisted = np.setdiff1d(np.arange(61), listed[r])
                ahead = (
                    (scores[r, unlisted] > scores[r, c]) | ((scores[r, unlisted] == scores[r, c]) & (unlisted < c))
                ).sum()
                assert ranked[r, c] == (listed[r] >= 0).sum() + ahead + 1
    else:
        assert [ranked[r, c] for r, c in zip(*gold)] == exact_ranks(scores, gold[1], gold[0]).tolist()
        top_scores, top_columns = ranks.top_k_exact(scores, 10)
        listed = {(r, c): rank for r, c, rank, _ in results[0] if rank <= 10}
        assert listed == {(r, c): i + 1 for r in range(300) for i, c in enumerate(top_columns[r])}


@pytest.fixture(scope="module", params=["generated", pytest.param("real", marks=pytest.mark.long)])
def xquad_r_test(request, tmp_path_factory):
    """The test split (30% of the articles) of an XQuAD-R-format corpus: generated in the
    exact file format (5 languages, tests/xquad_like.py), and the real XQuAD-R (11
    languages, 1,190 items; skipped without ../shared/corpora/xquad-r)."""
    from xquad_like import xquad_r_raw

    from hybridbatch.corpora import prepare

    root = tmp_path_factory.mktemp(f"xquad-r-{request.param}")
    languages = xquad_r_raw(root / "raw", request.param)
    prepare.prepare(
        {"source": "lareqa", "languages": languages, "test_fraction": 0.3, "split_seed": 0}, root / "raw", root / "c"
    )
    return root / "c" / "test"


@pytest.mark.slow
def test_xquad_r_runs_are_the_same_in_small_score_blocks(xquad_r_test, tmp_path):
    """All three settings of an XQuAD-R-format corpus with random 384-d integer vectors
    (exact float32 scores whatever the BLAS blocking; many ties): blocks of a third of the
    smallest language's candidates give the very runs of one block per candidate set."""
    corpus, emb = xquad_r_test, tmp_path / "emb"
    queries = schema.read_parquet(corpus / "queries.parquet", schema.QUERIES)
    passages = schema.read_parquet(corpus / "passages.parquet", schema.PASSAGES)
    rng = np.random.default_rng(0)
    for name, frame in (("queries", queries), ("passages", passages)):
        vectors = rng.integers(-3, 4, size=(len(frame), 384)).astype(np.float32)
        schema.write_table(
            embeddings_table(frame.iloc[:, 0].tolist(), frame.lang.tolist(), vectors), emb / f"{name}.parquet"
        )
    smallest = int(passages.lang.value_counts().min())  # candidates of the smallest language
    block_mb = smallest // 3 * 4 * ranks.QUERY_CHUNK / 2**20  # a third of them a block
    assert 10 < ranks.block_width(block_mb) < smallest / 2
    evaluation.search({"top_k": 100, "block_mb": block_mb}, emb, corpus, tmp_path / "small")
    evaluation.search({"top_k": 100, "block_mb": 1024}, emb, corpus, tmp_path / "whole")
    for setting in evaluation.SETTINGS:
        small, whole = (pd.read_parquet(tmp_path / run / f"{setting}.parquet") for run in ("small", "whole"))
        assert len(whole) > 1000
        pd.testing.assert_frame_equal(small, whole)


@pytest.mark.slow
def test_float16_vectors_give_the_float32_metrics_on_xquad_r(xquad_r_test, tiny_model_dir, tmp_path):
    """The tiny encoder's vectors of an XQuAD-R-format corpus stored as float16: every metric within
    0.002 of float32's (language bias within 1%), the files at most 60% of the size."""
    from conftest import TINY_MODEL

    from hybridbatch.evaluate.embed import embed_and_index

    summaries, sizes = {}, {}
    for dtype in ("float32", "float16"):
        params = {"batch_size": 256, "dtype": dtype, "index_factory": "Flat", "model": TINY_MODEL}
        embed_and_index(params, tiny_model_dir, xquad_r_test, [], tmp_path / dtype / "emb")
        evaluation.search({"top_k": 100}, tmp_path / dtype / "emb", xquad_r_test, tmp_path / dtype / "runs")
        summaries[dtype] = (
            evaluation.evaluate(
                {**METRICS, "descriptor": DESCRIPTOR},
                tmp_path / dtype / "runs",
                xquad_r_test,
                tmp_path / dtype / "metrics",
            )
            .set_index(["setting", "metric"])
            .value
        )
        sizes[dtype] = (tmp_path / dtype / "emb" / "passages.parquet").stat().st_size
    assert sizes["float16"] <= 0.6 * sizes["float32"]
    bias = summaries["float32"].index.get_level_values("metric") == "language_bias"
    difference = (summaries["float16"] - summaries["float32"]).abs()
    assert difference[~bias].max() <= 0.002 and len(difference) == len(summaries["float32"]) == 3 * 6 + 1
    assert (difference[bias] / summaries["float32"][bias]).max() <= 0.01
    assert summaries["float32"]["multi", "map"] > 0  # the tiny model's ranks are not all ties


@pytest.mark.slow
def test_passages_embedded_in_shards_give_the_unsharded_runs_on_xquad_r(xquad_r_test, tiny_model_dir, tmp_path):
    """An XQuAD-R-format corpus's test passages embedded in 3 shard jobs (uneven, contiguous) and gathered:
    the same ids in the same order, and vectors within 1e-6 (a text's batch differs between a shard and
    the whole, and with it the last bits of its vector); the gathered file's layout (a row group per
    shard), holding the whole job's vectors, gives the very runs of one job."""
    from conftest import TINY_MODEL

    from hybridbatch.evaluate.embed import ROW_GROUP, embed_and_index, embed_shard, gather_shards, shard_rows

    params = {"batch_size": 64, "dtype": "float32", "index_factory": "Flat", "model": TINY_MODEL}
    shard_dirs = [tmp_path / f"{shard}-of-3" for shard in range(3)]
    for shard, out in enumerate(shard_dirs):
        assert embed_shard({**params, "shard": shard, "shards": 3}, tiny_model_dir, xquad_r_test, out)["shard"] == shard
    embed_and_index(params, tiny_model_dir, xquad_r_test, shard_dirs, tmp_path / "sharded")
    embed_and_index(params, tiny_model_dir, xquad_r_test, [], tmp_path / "whole")
    sharded, whole = (evaluation.read_embeddings(tmp_path / run / "passages.parquet") for run in ("sharded", "whole"))
    assert sharded[:2] == whole[:2] and len(whole[0]) > 500
    assert [len(evaluation.read_embeddings(d / "passages.parquet")[0]) for d in shard_dirs] == [
        shard_rows(len(whole[0]), s, 3).stop - shard_rows(len(whole[0]), s, 3).start for s in range(3)
    ]
    np.testing.assert_allclose(sharded[2], whole[2], atol=1e-6)
    for shard, out in enumerate(shard_dirs):  # the shards' files with the whole job's vectors, gathered again
        rows = shard_rows(len(whole[0]), shard, 3)
        table = embeddings_table(whole[0][rows], whole[1][rows], whole[2][rows])
        schema.write_table(table, out / "passages.parquet", row_group_size=ROW_GROUP)
    gather_shards(shard_dirs, tmp_path / "sharded/passages.parquet")  # its queries are embedded already
    assert pq.ParquetFile(tmp_path / "sharded/passages.parquet").num_row_groups == 3
    for run in ("sharded", "whole"):
        evaluation.search({"top_k": 100, "block_mb": 64}, tmp_path / run, xquad_r_test, tmp_path / f"{run}-runs")
    for setting in evaluation.SETTINGS:
        pd.testing.assert_frame_equal(
            *(pd.read_parquet(tmp_path / f"{run}-runs" / f"{setting}.parquet") for run in ("sharded", "whole"))
        )


def test_rows_of_a_parquet_file_are_read_from_the_row_groups_that_hold_them(tmp_path):
    from hybridbatch.evaluate.embed import read_rows, shard_rows

    frame = pd.DataFrame(
        {"pid": [f"p{i}" for i in range(10)], "lang": "en", "item_id": "i", "text": [f"t{i}" for i in range(10)]}
    )
    schema.write_table(
        pa.Table.from_pandas(frame, schema=schema.PASSAGES, preserve_index=False),
        tmp_path / "p.parquet",
        row_group_size=3,
    )
    parts = [read_rows(tmp_path / "p.parquet", schema.PASSAGES, shard_rows(10, s, 4)) for s in range(4)]
    assert [len(p) for p in parts] == [2, 3, 2, 3]
    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), frame)
