"""The tests of `hybridbatch/evaluate/metrics.py`."""

import numpy as np
import pytest
import pytrec_eval
import torch

from hybridbatch.evaluate.metrics import rank_metrics
from hybridbatch.evaluate.ranks import exact_ranks, ranks_of_relevant


def clip_benchmark_recall_at_k(scores: torch.Tensor, positive_pairs: torch.Tensor, k: int) -> torch.Tensor:
    """Transcribed from clip_benchmark 1.6.2, metrics/zeroshot_retrieval.py (`recall_at_k`);
    its evaluate() reports (recall_at_k(...) > 0).float().mean()."""
    nb_texts, nb_images = scores.shape
    topk_indices = torch.topk(scores, k, dim=1)[1]
    nb_positive = positive_pairs.sum(dim=1)
    topk_indices_onehot = torch.nn.functional.one_hot(topk_indices, num_classes=nb_images)
    positive_pairs_reshaped = positive_pairs.view(nb_texts, 1, nb_images)
    nb_true_positive = (topk_indices_onehot * positive_pairs_reshaped).sum(dim=(1, 2))
    return nb_true_positive / nb_positive


def test_recall_follows_clip_benchmark_on_random_embeddings():
    rng = np.random.default_rng(0)
    n_images, per_image = 50, 5
    images = rng.normal(size=(n_images, 16)).astype(np.float32)
    texts = (np.repeat(images, per_image, axis=0) + 1.5 * rng.normal(size=(n_images * per_image, 16))).astype(
        np.float32
    )
    owner = np.repeat(np.arange(n_images), per_image)
    positive = torch.from_numpy(owner[:, None] == np.arange(n_images)[None, :]).long()  # texts x images
    scores = torch.from_numpy(texts @ images.T)
    for queries, candidates, pairs, matrix in (
        (texts, images, positive, scores),
        (images, texts, positive.T, scores.T),
    ):
        gold_rows, gold_columns = np.nonzero(pairs.numpy())
        ranks = ranks_of_relevant(queries, candidates, gold_rows, gold_columns, budget=997)
        ours = rank_metrics(gold_rows, ranks, [1, 5, 10], 10, 10, recall_rule="any").sort_index()
        for k in (1, 5, 10):
            reference = (clip_benchmark_recall_at_k(matrix, pairs, k) > 0).double().numpy()
            assert np.abs(ours[f"recall@{k}"].to_numpy() - reference).max() < 1e-9
            assert abs(ours[f"recall@{k}"].mean() - reference.mean()) < 1e-9
        assert 0 < ours["recall@1"].mean() < 1  # neither trivial nor hopeless


RECALL_AT = [1, 5, 10, 100]


def random_run(seed: int, n_queries: int = 60, n_docs: int = 300):
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((n_queries, n_docs)).astype(np.float32)
    qrels = {
        f"q{q}": {f"d{d}": 1 for d in rng.choice(n_docs, rng.integers(1, 12), replace=False)} for q in range(n_queries)
    }
    return scores, qrels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_pytrec_eval(seed):
    scores, qrels = random_run(seed)
    rows, columns = zip(*[(q, int(d[1:])) for q in range(len(scores)) for d in qrels[f"q{q}"]])
    rows, columns = np.array(rows), np.array(columns)
    ranks = exact_ranks(scores, columns, rows)
    ours = rank_metrics(np.array([f"q{q}" for q in rows]), ranks, RECALL_AT, 10, 10)

    run = {f"q{q}": {f"d{d}": float(s) for d, s in enumerate(row)} for q, row in enumerate(scores)}
    measures = {"map", "ndcg_cut_10"} | {f"recall_{k}" for k in RECALL_AT}
    reference = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    top10 = {q: dict(sorted(docs.items(), key=lambda kv: -kv[1])[:10]) for q, docs in run.items()}
    mrr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    for qid, values in reference.items():
        assert ours.loc[qid, "map"] == pytest.approx(values["map"], abs=1e-6)
        assert ours.loc[qid, "ndcg@10"] == pytest.approx(values["ndcg_cut_10"], abs=1e-6)
        for k in RECALL_AT:
            assert ours.loc[qid, f"recall@{k}"] == pytest.approx(values[f"recall_{k}"], abs=1e-6)
        assert ours.loc[qid, "mrr@10"] == pytest.approx(mrr[qid]["recip_rank"], abs=1e-6)


def test_language_bias_is_worst_minus_best_rank():
    # query a: relevant at ranks 3 (en), 17 (de), 5 (zh); query b: ranks 1 and 2
    query = np.array(["a", "a", "a", "b", "b"])
    ranks = np.array([3, 17, 5, 2, 1])
    result = rank_metrics(query, ranks, [1], 10, 10)
    assert result.loc["a", "rank_distance"] == 14
    assert result.loc["b", "rank_distance"] == 1
    assert result.loc["a", "map"] == pytest.approx((1 / 3 + 2 / 5 + 3 / 17) / 3)
    assert result.loc["b", "mrr@10"] == 1.0
    assert result.loc["a", "recall@1"] == 0.0
    assert result.loc["a", "n_relevant"] == 3
