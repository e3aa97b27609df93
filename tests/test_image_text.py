"""The image-text track: batch types, the symmetric loss, CLIP_benchmark's recall rule,
and LiT training + evaluation end to end on a small generated corpus."""

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from conftest import TINY_MODEL
from safetensors.torch import load_file

from hybridbatch.artifacts import schema
from hybridbatch.artifacts.vectors import embeddings_table
from hybridbatch.batch_types import BATCH_TYPES, CAPTION_CAPTION, IMAGE_MIXED, IMAGE_MONO
from hybridbatch.batches.image_text import build_image_text_batches
from hybridbatch.batches.sampling import batch_type_weights, draw_batch_types
from hybridbatch.batches.text import CROSS, MONO
from hybridbatch.evaluate.metrics import rank_metrics
from hybridbatch.evaluate.ranks import ranks_of_relevant
from hybridbatch.names import GROUPS
from hybridbatch.train.objectives import OBJECTIVES, symmetric_info_nce

LANGS = ["en", "de", "ru", "zh"]
WORDS = {"en": "red blue green small big round", "de": "rot blau grün klein groß rund",
         "ru": "красный синий зелёный малый большой круглый", "zh": "红 蓝 绿 小 大 圆"}  # fmt: skip


def write_image_corpus(
    root, n_images: int, seed: int = 0, conflict: tuple[str, str] | None = None, group_size: int = 1
) -> None:
    """Canonical image-text splits: captions (two per image and language, a few words
    that depend on the image) and images; `conflict` makes the first caption of one
    image relevant to another image too. Groups of `group_size` consecutive images are
    near-duplicates (groups.parquet)."""
    rng = np.random.default_rng(seed)
    groups = [
        (f"{offset + i:05d}", f"{split}:{i // group_size:05d}", split)
        for split, offset in (("train", 0), ("test", 10_000))
        for i in range(n_images)
    ]
    root.mkdir(parents=True, exist_ok=True)
    schema.write_parquet(pd.DataFrame(groups, columns=schema.GROUPS.names), root / GROUPS, schema.GROUPS)
    for split, offset in (("train", 0), ("test", 10_000)):
        captions, images = [], []
        for i in range(n_images):
            item = f"{offset + i:05d}"
            images.append((f"image:{item}", item, f"img/{item}.png", "0" * 64))
            for lang in LANGS:
                words = WORDS[lang].split()
                for caption in range(2):
                    text = " ".join(words[j] for j in rng.permutation(len(words))[: 2 + caption]) + f" {i}"
                    captions.append((f"{lang}:{item}:{caption}", lang, item, text, caption))
        queries = pd.DataFrame(captions, columns=schema.CAPTIONS.names)
        qrels = pd.DataFrame({"qid": queries.qid, "pid": "image:" + queries.item_id, "relevance": 1})
        if conflict and split == "train":
            extra = {"qid": f"en:{conflict[0]}:0", "pid": f"image:{conflict[1]}", "relevance": 1}
            qrels = pd.concat([qrels, pd.DataFrame([extra])], ignore_index=True)
        schema.write_parquet(queries, root / split / "queries.parquet", schema.CAPTIONS)
        schema.write_parquet(
            pd.DataFrame(images, columns=schema.IMAGES.names), root / split / "images.parquet", schema.IMAGES
        )
        schema.write_parquet(qrels, root / split / "qrels.parquet", schema.QRELS)


def plan(
    strategy: dict,
    steps: int = 200,
    captions: str = "all",
    seed: int = 0,
    type_draws: str = "per-batch",
    development_fraction: float = 0.0,
) -> dict:
    return {
        "strategy": strategy,
        "languages": LANGS[:3],
        "batch_size": 8,
        "steps": steps,
        "captions": captions,
        "seed": seed,
        "type_draws": type_draws,
        "development_fraction": development_fraction,
        "development_seed": 0,
    }


def read_batches(out) -> pd.DataFrame:
    return pd.concat([pq.read_table(p).to_pandas() for p in sorted(out.glob("shard-*.parquet"))], ignore_index=True)


def test_text_strategies_are_two_batch_types_drawn_as_before():
    assert batch_type_weights({"alpha": 0.3}, (MONO, CROSS)) == {MONO: 0.3, CROSS: pytest.approx(0.7)}
    for alpha in (0.0, 0.3, 1.0):
        drawn = draw_batch_types(batch_type_weights({"alpha": alpha}, (MONO, CROSS)), 500, np.random.default_rng(4))
        old = [MONO if u < alpha else CROSS for u in np.random.default_rng(4).random(500)]  # the former rule
        assert drawn == old
    with pytest.raises(ValueError, match="not among"):
        batch_type_weights({"weights": {"caption-caption": 1}}, (MONO, CROSS))


@pytest.mark.parametrize("weights", [{IMAGE_MIXED: 1}, {IMAGE_MONO: 1}, {IMAGE_MONO: 0.5, CAPTION_CAPTION: 0.5},
                                     {IMAGE_MONO: 0.25, IMAGE_MIXED: 0.25, CAPTION_CAPTION: 0.5}])  # fmt: skip
def test_image_text_batches_obey_their_type(tmp_path, weights):
    write_image_corpus(tmp_path / "corpus", 30, conflict=("00003", "00007"))
    stats = build_image_text_batches(plan({"weights": weights}), tmp_path / "corpus/train", tmp_path / "out")
    batches = read_batches(tmp_path / "out")
    captions = schema.read_parquet(tmp_path / "corpus/train/queries.parquet", schema.CAPTIONS).set_index("qid")
    assert batches.batch_id.nunique() == 200 and (batches.groupby("batch_id").size() == 8).all()
    for _, batch in batches.groupby("batch_id"):
        kind = batch.batch_type.iloc[0]
        assert batch.item_id.is_unique  # an image at most once per batch
        assert not {"00003", "00007"} <= set(batch.item_id)  # a caption of one is relevant to the other
        assert set(batch.query_lang) <= set(LANGS[:3])
        assert (captions.loc[batch.qid, "item_id"].to_numpy() == batch.item_id.to_numpy()).all()
        if kind == CAPTION_CAPTION:
            targets = captions.loc[batch.pid]
            assert (targets.item_id.to_numpy() == batch.item_id.to_numpy()).all()  # the same image's caption
            assert (targets.lang.to_numpy() != batch.query_lang.to_numpy()).all()  # in another language
            assert (targets.text.to_numpy() == batch.positive.to_numpy()).all()
        else:
            assert (batch.passage_lang == "image").all() and (batch.pid == "image:" + batch.item_id).all()
        if kind == IMAGE_MONO:
            assert batch.query_lang.nunique() == 1
    assert set(batches.query_lang) == set(LANGS[:3])  # every training language is drawn
    realised = json.loads((tmp_path / "out/stats.json").read_text())["realised_weights"]
    for kind in BATCH_TYPES:
        assert realised[kind] == pytest.approx(
            batch_type_weights({"weights": weights}, tuple(BATCH_TYPES))[kind], abs=0.1
        )
    assert sum(stats.values()) == 200
    if weights == {IMAGE_MIXED: 1}:  # mixed batches do mix languages
        assert (batches.groupby("batch_id").query_lang.nunique() > 1).mean() > 0.9


def test_a_batch_type_is_one_registry_entry(tmp_path, monkeypatch):
    """A planted type, translation pairs with every source caption in one language: one
    entry in batch_types.BATCH_TYPES, and the config check, the batches stage and the
    report's pair counts take it as they take the shipped ones."""
    from hybridbatch.batch_types import CAPTIONS, BatchType, image_share
    from hybridbatch.config import check_image_text_strategies

    monkeypatch.setitem(BATCH_TYPES, "caption-caption-mono", BatchType(one_language=True, targets=CAPTIONS))
    weights = {IMAGE_MIXED: 0.5, "caption-caption-mono": 0.5}
    section = {"strategies": {"planted": {"weights": weights}}, "train_languages": LANGS[:3], "curve": None}
    check_image_text_strategies(section)
    write_image_corpus(tmp_path / "corpus", 20)
    stats = build_image_text_batches(
        plan({"weights": weights}, 20, type_draws="stratified"), tmp_path / "corpus/train", tmp_path / "out"
    )
    assert stats["caption-caption-mono"] == 10 and image_share(weights) == 0.5
    captions = schema.read_parquet(tmp_path / "corpus/train/queries.parquet", schema.CAPTIONS).set_index("qid")
    for _, batch in read_batches(tmp_path / "out").groupby("batch_id"):
        if batch.batch_type.iloc[0] == "caption-caption-mono":
            targets = captions.loc[batch.pid]
            assert batch.query_lang.nunique() == 1 and (targets.lang.to_numpy() != batch.query_lang.to_numpy()).all()
            assert (targets.item_id.to_numpy() == batch.item_id.to_numpy()).all()


def test_stratified_draws_fix_each_type_count(tmp_path):
    write_image_corpus(tmp_path / "corpus", 20)
    weights = {IMAGE_MONO: 0.25, IMAGE_MIXED: 0.35, CAPTION_CAPTION: 0.4}
    types = build_image_text_batches(
        plan({"weights": weights}, 41, type_draws="stratified"), tmp_path / "corpus/train", tmp_path / "out"
    )
    assert types == {IMAGE_MONO: 10, IMAGE_MIXED: 14, CAPTION_CAPTION: 17}  # 10.25, 14.35, 16.4: the largest remainder
    kinds = read_batches(tmp_path / "out").groupby("batch_id").batch_type.first().tolist()
    assert kinds != sorted(kinds)  # shuffled, not in blocks


def test_strategies_of_one_seed_see_the_same_images_in_the_same_order(tmp_path):
    write_image_corpus(tmp_path / "corpus", 20)
    for name, weights in (("mixed", {IMAGE_MIXED: 1}), ("hybrid", {IMAGE_MONO: 0.5, CAPTION_CAPTION: 0.5})):
        build_image_text_batches(plan({"weights": weights}, 30), tmp_path / "corpus/train", tmp_path / name)
    assert read_batches(tmp_path / "mixed").item_id.tolist() == read_batches(tmp_path / "hybrid").item_id.tolist()


def test_image_text_batches_are_deterministic_and_first_protocol_uses_caption_zero(tmp_path):
    write_image_corpus(tmp_path / "corpus", 20)
    strategy = {"weights": {IMAGE_MONO: 0.5, CAPTION_CAPTION: 0.5}}
    for out in ("a", "b"):
        build_image_text_batches(plan(strategy, 40, "first"), tmp_path / "corpus/train", tmp_path / out)
    assert read_batches(tmp_path / "a").equals(read_batches(tmp_path / "b"))
    batches = read_batches(tmp_path / "a")
    assert batches.qid.str.endswith(":0").all()
    other = plan(strategy, 40, "first", seed=1)
    build_image_text_batches(other, tmp_path / "corpus/train", tmp_path / "c")
    assert not read_batches(tmp_path / "c").equals(batches)


def test_symmetric_info_nce_and_its_gradient_equal_a_direct_implementation():
    generator = torch.Generator().manual_seed(0)
    texts = torch.nn.functional.normalize(torch.randn(6, 5, generator=generator, dtype=torch.float64), dim=-1)
    images = torch.nn.functional.normalize(torch.randn(6, 5, generator=generator, dtype=torch.float64), dim=-1)
    mask = torch.zeros(6, 6, dtype=torch.bool)

    def direct(t, i):
        logits = t @ i.T / 0.07
        text_to_image = -torch.diagonal(logits - torch.logsumexp(logits, dim=1, keepdim=True)).mean()
        image_to_text = -torch.diagonal(logits - torch.logsumexp(logits, dim=0, keepdim=True)).mean()
        return (text_to_image + image_to_text) / 2

    ours_t, ours_i = texts.clone().requires_grad_(), images.clone().requires_grad_()
    theirs_t, theirs_i = texts.clone().requires_grad_(), images.clone().requires_grad_()
    ours, theirs = symmetric_info_nce(ours_t, ours_i, mask, 0.07), direct(theirs_t, theirs_i)
    ours.backward()
    theirs.backward()
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-12)
    torch.testing.assert_close(ours_t.grad, theirs_t.grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(ours_i.grad, theirs_i.grad, rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(
        lambda t, i: symmetric_info_nce(t, i, mask, 0.07),
        (ours_t.detach().requires_grad_(), ours_i.detach().requires_grad_()),
    )
    assert OBJECTIVES.lookup("symmetric-info-nce", "lit.objective") is symmetric_info_nce
    mask[1, 3] = mask[4, 0] = True  # never a negative, in either direction
    masked = texts @ images.T / 0.07
    masked = masked.masked_fill(mask, float("-inf"))
    expected = (
        torch.nn.functional.cross_entropy(masked, torch.arange(6))
        + torch.nn.functional.cross_entropy(masked.T, torch.arange(6))
    ) / 2
    assert symmetric_info_nce(texts, images, mask, 0.07).item() == pytest.approx(expected.item(), abs=1e-12)
    assert symmetric_info_nce(texts, images, mask, 0.07).item() != pytest.approx(ours.item(), abs=1e-6)
    one_way = OBJECTIVES.lookup("info-nce", "lit")(
        texts, images, mask, 0.07
    )  # caption-caption batches: text to target only
    direct_one_way = -torch.diagonal(masked - torch.logsumexp(masked, dim=1, keepdim=True)).mean()
    assert one_way.item() == pytest.approx(direct_one_way.item(), abs=1e-12)


def test_caption_batches_mask_relevant_targets_and_duplicate_texts():
    from hybridbatch.train.masks import Relevance, caption_false_negatives

    relevance = Relevance.from_pairs(
        [("a", "image:1"), ("b", "image:2"), ("c", "image:3"), ("x", "image:1"), ("y", "image:2"), ("z", "image:1")]
    )
    rows = {
        "qid": ["a", "b", "c"],
        "pid": ["x", "y", "z"],
        "query": ["red", "blue", "red"],
        "positive": ["rot", "blau", "rot"],
    }
    relevant, duplicate = caption_false_negatives(rows, False, relevance)
    assert relevant.tolist() == [
        [False, False, True],
        [False, False, False],
        [False, False, False],
    ]  # z shares a's image
    assert duplicate.tolist() == [
        [False, False, False],
        [False, False, False],
        [True, False, False],
    ]  # same target text
    images = {"qid": ["a", "b", "c"], "pid": ["image:1", "image:2", "image:1"], "query": ["red", "blue", "red"]}
    relevant, duplicate = caption_false_negatives(images, True, relevance)
    assert relevant.tolist() == [[False, False, True], [False, False, False], [False, False, False]]
    assert duplicate.tolist() == [[False, False, False], [False, False, False], [True, False, False]]  # a's text again


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


def generated_test_split(tmp_path):
    """Captions, images and qrels of the test split of a generated 12-image corpus."""
    write_image_corpus(tmp_path, 12)
    return (
        schema.read_parquet(tmp_path / "test/queries.parquet", schema.CAPTIONS),
        schema.read_parquet(tmp_path / "test/images.parquet", schema.IMAGES),
        schema.read_parquet(tmp_path / "test/qrels.parquet", schema.QRELS),
    )


@pytest.mark.parametrize("dimension, device", [(2, None), (8, None), (8, "cpu")])
def test_blocks_sliced_from_shared_products_rank_as_blocks_scored_alone(tmp_path, dimension, device):
    """t2i and i2t of a language share one product, L1->L2 and L2->L1 too, and `first` is
    part of `all`: the per-query frame equals scoring every block on its own, ties included
    (2-d integer vectors tie often and exactly), also with the products run by torch (the
    path of a job holding a GPU, here on the CPU)."""
    from hybridbatch.evaluate.image_text import relevant_pairs, score_settings

    captions, images, qrels = generated_test_split(tmp_path)
    rng = np.random.default_rng(5)
    vectors = {
        "image": rng.integers(-2, 3, size=(len(images), dimension)).astype(np.float32),
        "caption": rng.integers(-2, 3, size=(len(captions), dimension)).astype(np.float32),
    }
    params = {"recall_at": [1, 5], "ndcg_at": 10, "mrr_at": 10, "protocols": ["first", "all"], "t2t_languages": None}
    relevant = relevant_pairs(captions, images, qrels)
    shared, shared_blocks = score_settings(captions, images, relevant, vectors, params, device=device)
    alone, alone_blocks = score_settings(captions, images, relevant, vectors, params, per_block=True)
    pd.testing.assert_frame_equal(shared, alone)
    pd.testing.assert_frame_equal(shared_blocks, alone_blocks)
    assert set(shared.setting) == {
        f"{s}/{p}" for s in ("t2i", "i2t", "i2t-multi", "t2t-cross") for p in ("first", "all")
    }
    assert 0 < shared["recall@1"].mean() < 1


def test_every_setting_ranks_as_a_brute_force_sort(tmp_path):
    from hybridbatch.evaluate.image_text import relevant_pairs, score_settings
    from hybridbatch.evaluate.metrics import summary_rows

    captions, images, qrels = generated_test_split(tmp_path)
    rng = np.random.default_rng(3)
    image_vectors = rng.normal(size=(len(images), 8))
    owner = pd.Series(np.arange(len(images)), index=images.item_id)[captions.item_id].to_numpy()
    vectors = {"image": image_vectors, "caption": image_vectors[owner] + 1.5 * rng.normal(size=(len(captions), 8))}
    params = {"recall_at": [1, 5], "ndcg_at": 10, "mrr_at": 10, "protocols": ["first", "all"]}
    unjudged = pd.DataFrame({"qid": captions.qid[:5], "pid": images.pid[7], "relevance": 0})  # judged, not relevant
    pd.testing.assert_frame_equal(
        relevant_pairs(captions, images, pd.concat([qrels, unjudged])), relevant_pairs(captions, images, qrels)
    )
    per_query, by_language = score_settings(captions, images, relevant_pairs(captions, images, qrels), vectors, params)
    per_query = per_query.set_index(["setting", "qid", "candidate_lang"])

    def ranks(query: np.ndarray, candidates: np.ndarray, relevant: np.ndarray) -> np.ndarray:
        order = np.argsort(-(candidates @ query), kind="stable")  # ties: the earlier candidate first
        return np.flatnonzero(relevant[order]) + 1

    for protocol in ("first", "all"):
        chosen = captions[(captions.caption == 0) | (protocol == "all")]
        for image in range(len(images)):
            pooled = ranks(image_vectors[image], vectors["caption"][chosen.index], owner[chosen.index] == image)
            row = per_query.loc[(f"i2t-multi/{protocol}", images.pid[image], "all")]
            assert row["map"] == pytest.approx(np.mean(np.arange(1, len(pooled) + 1) / pooled))
            langs = chosen.lang.to_numpy()[owner[chosen.index] == image][
                np.argsort(
                    -(vectors["caption"][chosen.index][owner[chosen.index] == image] @ image_vectors[image]),
                    kind="stable",
                )
            ]
            best = pd.Series(pooled).groupby(langs).min()
            # across languages, best caption of each, as a share of the pooled captions
            assert row["rank_distance"] == (best.max() - best.min()) / len(chosen)
            for lang in LANGS:
                in_lang = chosen[chosen.lang == lang]
                found = ranks(image_vectors[image], vectors["caption"][in_lang.index], owner[in_lang.index] == image)
                assert per_query.loc[(f"i2t/{protocol}", images.pid[image], lang), "recall@1"] == float(found[0] == 1)
        for caption in chosen.index[::7]:
            found = ranks(vectors["caption"][caption], image_vectors, np.arange(len(images)) == owner[caption])
            key = (f"t2i/{protocol}", captions.qid[caption], "image")
            assert per_query.loc[key, "mrr@10"] == pytest.approx(1 / found[0] if found[0] <= 10 else 0)
        cross = 0
        for source in LANGS:  # t2t-cross: captions in one language against another's
            for target in (lang for lang in LANGS if lang != source):
                candidates = chosen[chosen.lang == target]
                for caption in chosen.index[chosen.lang == source][::3]:
                    found = ranks(
                        vectors["caption"][caption],
                        vectors["caption"][candidates.index],
                        owner[candidates.index] == owner[caption],
                    )
                    row = per_query.loc[(f"t2t-cross/{protocol}", captions.qid[caption], target)]
                    assert row["map"] == pytest.approx(np.mean(np.arange(1, len(found) + 1) / found))
                    assert row["recall@1"] == float(found[0] == 1) and row["n_relevant"] == len(found)
                    cross += 1
        assert cross >= 12 * len(LANGS)
    pivot = score_settings(
        captions,
        images,
        relevant_pairs(captions, images, qrels),
        vectors,
        {**params, "protocols": ["first"], "t2t_languages": ["en"]},
    )[1]
    pairs = pivot[pivot.setting == "t2t-cross/first"][["query_lang", "candidate_lang"]].apply(tuple, axis=1)
    assert sorted(pairs) == sorted([("en", lang) for lang in LANGS[1:]] + [(lang, "en") for lang in LANGS[1:]])
    rows = per_query.reset_index()  # every block is the mean of its queries; the summary the mean of the blocks
    block_means = rows.groupby(["setting", "query_lang", "candidate_lang"])[["map", "recall@1", "rank_distance"]].mean()
    pd.testing.assert_frame_equal(
        by_language.set_index(["setting", "query_lang", "candidate_lang"])[block_means.columns].sort_index(),
        block_means.sort_index(),
    )
    assert (by_language.skipped == 0).all()  # every caption's image and every image's captions are evaluated
    counts = rows.groupby(["setting", "query_lang", "candidate_lang"]).size()
    assert (
        by_language.set_index(["setting", "query_lang", "candidate_lang"]).queries.sort_index().tolist()
        == counts.tolist()
    )
    summary = summary_rows(
        by_language, ["map", "recall@1"], {key: None for key in ("corpus", "model", "strategy", "alpha", "seed")}
    )
    expected = block_means.groupby("setting").mean()
    for setting, metric, value in zip(summary.setting, summary.metric, summary.value):
        assert value == pytest.approx(expected.loc[setting, metric if metric != "language_bias" else "rank_distance"])


def write_lit_inputs(tmp_path) -> None:
    """A generated corpus of 24 images, random 12-d image features, and 6 batches (half
    image-caption, half caption-caption) with validation batches."""
    write_image_corpus(tmp_path / "corpus", 24)
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        pids = schema.read_parquet(tmp_path / "corpus" / split / "images.parquet", schema.IMAGES).pid.tolist()
        schema.write_table(
            embeddings_table(pids, ["image"] * len(pids), rng.normal(size=(len(pids), 12))),
            tmp_path / "features" / f"{split}.parquet",
        )
    build_image_text_batches(
        plan({"weights": {IMAGE_MONO: 0.5, CAPTION_CAPTION: 0.5}}, 6, development_fraction=0.4),
        tmp_path / "corpus/train",
        tmp_path / "batches",
    )


def test_lit_training_and_image_text_evaluation_end_to_end(tmp_path, tiny_model_dir):
    from hybridbatch.evaluate.image_text import evaluate_image_text
    from hybridbatch.models.image_text import ImageTextModel
    from hybridbatch.train.image_text import train_lit

    write_lit_inputs(tmp_path)
    training = {"objective": "symmetric-info-nce", "trainable_text_layers": 1, "learning_rate": 1e-3,
                "projection_learning_rate": 1e-2, "weight_decay": 0.0, "warmup_fraction": 0.0, "temperature": 0.1,
                "learnable_temperature": True}  # fmt: skip
    params = {
        "lit": training,
        "seed": 0,
        "text_model": TINY_MODEL,
        "text_model_name": "tiny",
        "image_tower": "random",
        "trainer": {"validation_every": 2},
    }
    summary = train_lit(params, tiny_model_dir, tmp_path / "features", tmp_path / "batches", None, tmp_path / "model")
    log = pd.read_csv(tmp_path / "model/training_log.csv")
    assert len(log) == 6 and set(log.batch_type) <= {IMAGE_MONO, CAPTION_CAPTION} and log.loss.notna().all()
    assert log.temperature.iloc[-1] != pytest.approx(0.1)  # learnable
    validation = pd.read_csv(tmp_path / "model/validation_log.csv")  # held-out images, never trained on
    held_out = set(read_batches(tmp_path / "batches/validation").item_id)
    assert held_out and not held_out & set(read_batches(tmp_path / "batches").item_id)
    assert validation.steps_trained.tolist() == [2, 4, 6]
    assert (
        summary["saved_step"] == 6 and summary["development_recall_at_1"] == validation.development_recall_at_1.iloc[-1]
    )
    assert validation.development_recall_at_1.between(0, 1).all()
    assert (tmp_path / "model/training_curves.png").stat().st_size > 0
    model = ImageTextModel.load(tmp_path / "model", TINY_MODEL)
    assert model.image_projection.weight.shape[1] == 12
    top = model.text.transformer.config.num_hidden_layers - 1
    trained = load_file(str(tmp_path / "model/text/trained.safetensors"))  # the text tower stores its top layer only
    assert trained and all(name.startswith(f"encoder.layer.{top}.") for name in trained)
    descriptor = {"corpus": "gen", "model": "tiny+random", "strategy": "hybrid", "alpha": 0.5, "seed": 0}
    evaluation = {"recall_at": [1, 5, 10], "ndcg_at": 10, "mrr_at": 10, "languages": LANGS, "images": 10,
                  "subset_seed": 0, "protocols": ["first", "all"], "batch_size": 16, "text_model": TINY_MODEL,
                  "descriptor": descriptor}  # fmt: skip
    summary = evaluate_image_text(
        evaluation, tmp_path / "model", tmp_path / "features", tmp_path / "corpus/test", None, tmp_path / "metrics"
    )
    settings = {f"{s}/{p}" for s in ("t2i", "i2t", "i2t-multi", "t2t-cross") for p in ("first", "all")}
    assert set(summary.setting) == settings
    assert set(summary[summary.metric == "language_bias"].setting) == {"i2t-multi/first", "i2t-multi/all"}
    per_query = pd.read_parquet(tmp_path / "metrics/per_query.parquet")
    assert per_query.item_id.nunique() == 10  # 10 test images drawn; captions carry their image as the item
    t2i = per_query[per_query.setting == "t2i/first"]
    assert len(t2i) == 10 * len(LANGS) and (t2i.n_relevant == 1).all()
    i2t_all = per_query[per_query.setting == "i2t/all"]
    assert (i2t_all.n_relevant == 2).all() and set(i2t_all.candidate_lang) == set(LANGS)
    multi = per_query[per_query.setting == "i2t-multi/first"]
    assert (multi.n_relevant == len(LANGS)).all() and multi.rank_distance.notna().all()
    first_only = evaluate_image_text(
        {**evaluation, "protocols": ["first"]},
        tmp_path / "model",
        tmp_path / "features",
        tmp_path / "corpus/test",
        None,
        tmp_path / "first",
    )  # encodes caption 0 only
    keys = ["setting", "metric"]
    both = summary[summary.setting.str.endswith("/first")].sort_values(keys, ignore_index=True)
    pd.testing.assert_frame_equal(first_only.sort_values(keys, ignore_index=True), both, rtol=1e-6)
    trained = LANGS[:2]  # the trained and held-out language groups: settings of their own
    grouped = evaluate_image_text(
        {**evaluation, "train_languages": trained},
        tmp_path / "model",
        tmp_path / "features",
        tmp_path / "corpus/test",
        None,
        tmp_path / "grouped",
    ).set_index(keys)
    by_language = pd.read_parquet(tmp_path / "metrics/by_language.parquet")
    grouped_rows = pd.read_parquet(tmp_path / "grouped/per_query.parquet")
    for task, side in (("t2i", "query_lang"), ("i2t", "candidate_lang")):
        for group, langs in (("trained", trained), ("held-out", LANGS[2:])):
            for protocol in ("first", "all"):
                blocks = by_language[(by_language.setting == f"{task}/{protocol}") & by_language[side].isin(langs)]
                value = grouped.value[(f"{task}-{group}/{protocol}", "recall@1")]
                assert value == pytest.approx(blocks["recall@1"].mean())
                rows = grouped_rows[grouped_rows.setting == f"{task}-{group}/{protocol}"]
                ungrouped = per_query[(per_query.setting == f"{task}/{protocol}") & per_query[side].isin(langs)]
                assert set(rows[side]) == set(langs) and len(rows) == len(ungrouped)
    assert set(grouped.index) > set(summary.set_index(keys).index)
    value = summary.set_index(["setting", "metric"]).value
    assert 0 <= value[("t2i/first", "recall@1")] <= value[("t2i/first", "recall@10")] <= 1
    # every caption against the drawn images, from the saved model and each image's own features
    feature_table = pq.read_table(tmp_path / "features/test.parquet").to_pandas().set_index("id")
    drawn = sorted("image:" + per_query.item_id.unique())
    features = torch.tensor(np.stack(feature_table.embedding[drawn].to_numpy()), dtype=torch.float32)
    texts = schema.read_parquet(tmp_path / "corpus/test/queries.parquet", schema.CAPTIONS).set_index("qid").text
    with torch.inference_mode():
        image_vectors = model.embed_images(features).numpy()
        caption_vectors = model.encode_texts(texts[t2i.qid].tolist(), 16)
    scores = caption_vectors @ image_vectors.T
    own = np.array([drawn.index("image:" + item) for item in t2i.item_id])
    rank = 1 + (scores > scores[np.arange(len(own)), own][:, None]).sum(axis=1)
    np.testing.assert_allclose(t2i["mrr@10"].to_numpy(), np.where(rank <= 10, 1 / rank, 0), atol=1e-6)
    assert len(set(rank)) > 3  # the ranks say which image each caption was scored against
    written = pd.read_csv(tmp_path / "metrics/summary.csv")  # the files: the returned summary, no index columns
    pd.testing.assert_frame_equal(written[["setting", "metric", "value"]], summary[["setting", "metric", "value"]])
    assert list(written.columns) == list(summary.columns) and written.seed.tolist() == [0] * len(written)
    assert (
        pq.read_schema(tmp_path / "metrics/per_query.parquet").names
        == list(per_query.columns)
        == [
            "item_id",
            "qid",
            "n_relevant",
            "map",
            "recall@1",
            "recall@5",
            "recall@10",
            "ndcg@10",
            "mrr@10",
            "rank_distance",
            "query_lang",
            "candidate_lang",
            "setting",
        ]
    )
    assert pq.read_schema(tmp_path / "metrics/by_language.parquet").names == [
        "map",
        "recall@1",
        "recall@5",
        "recall@10",
        "ndcg@10",
        "mrr@10",
        "rank_distance",
        "query_lang",
        "candidate_lang",
        "queries",
        "skipped",
        "setting",
    ]
    schema.write_table(
        pq.read_table(tmp_path / "features/test.parquet").slice(1), tmp_path / "some-features/test.parquet"
    )
    with pytest.raises(
        schema.SchemaError, match=rf"{tmp_path / 'some-features'}/test.parquet: no features for images \['image:"
    ):
        evaluate_image_text(
            evaluation, tmp_path / "model", tmp_path / "some-features", tmp_path / "corpus/test", None, tmp_path / "m2"
        )


@pytest.mark.parametrize("rounded", [False, True])
def test_ranks_of_many_relevant_candidates_equal_direct_comparison(rounded):
    from hybridbatch.evaluate.ranks import exact_ranks

    rng = np.random.default_rng(5)
    queries, candidates = rng.normal(size=(30, 6)), rng.normal(size=(400, 6))
    if rounded:  # many tied scores, some at gold scores
        queries, candidates = np.round(queries), np.round(candidates)
    rows = np.repeat(np.arange(30), 25)
    columns = np.concatenate([rng.choice(400, 25, replace=False) for _ in range(30)])
    expected = exact_ranks(queries @ candidates.T, columns, rows)
    assert (
        ranks_of_relevant(queries, candidates, rows, columns, budget=400 * 7) == expected
    ).all()  # 5 chunks of 7 queries
    assert (ranks_of_relevant(queries, candidates, rows, columns) == expected).all()  # counted (25 a query)
    later = rows >= 14  # the first two chunks hold no relevant candidate
    assert (
        ranks_of_relevant(queries, candidates, rows[later], columns[later], budget=400 * 7) == expected[later]
    ).all()
    few = np.arange(len(rows)) % 25 < 2  # 2 a query: compared, not counted, in chunks of 7 queries
    assert (ranks_of_relevant(queries, candidates, rows[few], columns[few], budget=400 * 7) == expected[few]).all()


def test_the_test_subset_keeps_images_with_a_caption_in_every_language():
    """Image 3 has no zh caption and item 5 no image: neither is evaluated; `images` draws a
    sorted subset (all of them when None or more than there are); a language without
    captions is an error naming it."""
    from hybridbatch.subset import test_subset

    captions = pd.DataFrame(
        [
            (f"{lang}:{item}:{c}", lang, str(item), f"{lang} {item}", c)
            for item in range(6)
            for lang in ("en", "zh")
            for c in (0, 1)
            if (item, lang) != (3, "zh")
        ],
        columns=schema.CAPTIONS.names,
    )
    images = pd.DataFrame(
        [(f"image:{item}", str(item), f"{item}.png", "0" * 64) for item in (4, 2, 1, 0, 3)], columns=schema.IMAGES.names
    )
    kept_captions, kept_images = test_subset(captions, images, ["en", "zh"], None, 0)
    assert kept_images.pid.tolist() == ["image:0", "image:1", "image:2", "image:4"] and kept_images.index.tolist() == [
        0,
        1,
        2,
        3,
    ]
    assert kept_captions.qid.tolist() == [
        f"{lang}:{item}:{c}" for lang in ("en", "zh") for item in (0, 1, 2, 4) for c in (0, 1)
    ]
    assert test_subset(captions, images, ["en", "zh"], 4, 0)[1].pid.tolist() == kept_images.pid.tolist()
    with pytest.raises(
        schema.SchemaError,
        match=r"config key image_text\.evaluation\.images: 5 requested, but the test split has 4 images",
    ):
        test_subset(captions, images, ["en", "zh"], 5, 0)  # not silently fewer than the config says
    drawn = [test_subset(captions, images, ["en"], 3, seed)[1].item_id.tolist() for seed in range(6)]
    assert (
        all(len(d) == 3 and d == sorted(d) and set(d) <= {"0", "1", "2", "3", "4"} for d in drawn)
        and len(set(map(tuple, drawn))) > 1
    )
    with pytest.raises(schema.SchemaError, match=r"test captions: no captions in \['fr'\]"):
        test_subset(captions, images, ["en", "fr"], None, 0)


def test_caption_states_train_and_evaluate_as_the_whole_tower(tmp_path, corpus_dir):
    """LiT from cached frozen states: the same losses, weights and metrics as from the
    whole tower (dropout on in the trained layers), and mismatches fail naming the states."""
    from hybridbatch.evaluate.image_text import evaluate_image_text
    from hybridbatch.models.base_model import build_base_model
    from hybridbatch.models.caption_states import CaptionStates
    from hybridbatch.models.frozen_layers import caption_states
    from hybridbatch.models.image_text import ImageTextModel
    from hybridbatch.train.image_text import train_lit

    text_model = {**TINY_MODEL, "source": {**TINY_MODEL["source"], "layers": 3}}
    build_base_model(text_model, corpus_dir / "train", tmp_path / "base")
    write_lit_inputs(tmp_path)
    training = {"objective": "symmetric-info-nce", "trainable_text_layers": 2, "learning_rate": 1e-3,
                "projection_learning_rate": 1e-2, "weight_decay": 0.01, "warmup_fraction": 0.0, "temperature": 0.1,
                "learnable_temperature": True}  # fmt: skip
    states = {"text_model": text_model, "trainable_text_layers": 2}
    caption_states(
        {**states, "split": "train", "languages": LANGS[:3], "captions": "all"},
        tmp_path / "base",
        tmp_path / "corpus/train",
        tmp_path / "states/train",
    )
    evaluation = {"recall_at": [1, 5], "ndcg_at": 10, "mrr_at": 10, "languages": LANGS, "images": 10,
                  "subset_seed": 0, "protocols": ["first", "all"], "batch_size": 16, "text_model": text_model,
                  "descriptor": {"corpus": "gen", "model": "tiny", "strategy": "hybrid", "alpha": 0.5, "seed": 0}}  # fmt: skip
    subset = {key: evaluation[key] for key in ("languages", "images", "subset_seed", "protocols")}
    caption_states(
        {**states, "split": "test", **subset}, tmp_path / "base", tmp_path / "corpus/test", tmp_path / "states/test"
    )
    assert CaptionStates(tmp_path / "states/train").layers == 1
    params = {"lit": training, "seed": 0, "text_model": text_model, "text_model_name": "tiny",
              "image_tower": "random", "trainer": {"validation_every": 2}}  # fmt: skip
    for name, train_states in (("whole", None), ("cached", tmp_path / "states/train")):
        args = (tmp_path / "features", tmp_path / "batches", train_states, tmp_path / name / "model")
        train_lit(params, tmp_path / "base", *args)
    summaries = {
        name: evaluate_image_text(
            evaluation, tmp_path / "cached/model", tmp_path / "features", tmp_path / "corpus/test", test_states,
            tmp_path / name / "metrics",
        )
        for name, test_states in (("whole", None), ("cached", tmp_path / "states/test"))
    }  # fmt: skip
    for log in ("training_log.csv", "validation_log.csv"):
        whole, cached = (pd.read_csv(tmp_path / name / "model" / log) for name in ("whole", "cached"))
        loss = "loss" if log == "training_log.csv" else "validation_loss"
        np.testing.assert_allclose(cached[loss], whole[loss], atol=1e-5)
    for weights in ("text/trained.safetensors", "image_projection.safetensors"):
        whole, cached = (load_file(str(tmp_path / name / "model" / weights)) for name in ("whole", "cached"))
        assert whole.keys() == cached.keys()
        for key in whole:
            torch.testing.assert_close(cached[key], whole[key], atol=1e-5, rtol=0)
    trained = load_file(str(tmp_path / "whole/model/text/trained.safetensors"))
    assert {name.split(".")[2] for name in trained} == {"1", "2"}  # the two top layers trained, layer 0 not
    from hybridbatch.models.packed_encoder import PackedEncoder

    tower = PackedEncoder(tmp_path / "cached/model/text", text_model, "cpu", first=1)  # what a job from states loads
    assert not hasattr(tower, "embeddings") and {name.split(".")[2] for name, _ in tower.named_parameters()} == {
        "1",
        "2",
    }
    model = ImageTextModel.load(tmp_path / "cached/model", text_model)
    texts = schema.read_parquet(tmp_path / "corpus/test/queries.parquet", schema.CAPTIONS).text.tolist()
    whole = model.encode_texts(texts, 7)
    model.use_states(CaptionStates(tmp_path / "states/test"))
    evaluated = sorted(set(pd.read_parquet(tmp_path / "states/test/captions.parquet").text))
    np.testing.assert_allclose(model.encode_texts(evaluated, 7), whole[[texts.index(t) for t in evaluated]], atol=1e-5)
    # The whole tower's vectors and the states' differ in their last bits, which decides the order of
    # near-tied scores: so the evaluation from states is checked against the metrics of the very vectors
    # the states give (above, within 1e-5 of the whole tower's), computed here outside the stage.
    from hybridbatch.evaluate.image_text import relevant_pairs, score_settings
    from hybridbatch.evaluate.metrics import summary_rows
    from hybridbatch.models.image_text import read_features
    from hybridbatch.names import metric_names
    from hybridbatch.subset import evaluated_captions

    captions, images = evaluated_captions(tmp_path / "corpus/test", LANGS, 10, 0, ["first", "all"])
    relevant = relevant_pairs(
        captions, images, schema.read_parquet(tmp_path / "corpus/test/qrels.parquet", schema.QRELS)
    )
    row_of, features = read_features(tmp_path / "features/test.parquet")
    from_states = ImageTextModel.load(tmp_path / "cached/model", text_model, CaptionStates(tmp_path / "states/test"))
    with torch.inference_mode():
        vectors = {
            "caption": from_states.encode_texts(captions.text.tolist(), evaluation["batch_size"]),
            "image": from_states.embed_images(features[[row_of[pid] for pid in images.pid]]).numpy(),
        }
    _, by_language = score_settings(captions, images, relevant, vectors, evaluation)
    expected = summary_rows(by_language, metric_names([1, 5], 10, 10), evaluation["descriptor"])
    pd.testing.assert_frame_equal(summaries["cached"], expected)
    assert set(summaries["whole"].metric) == set(summaries["cached"].metric)
    assert summaries["whole"].value.nunique() > 5

    with pytest.raises(ValueError, match=rf"{tmp_path / 'states/train'}: states after 1 layers, but the text tower"):
        train_lit(
            {**params, "lit": {**training, "trainable_text_layers": 3}},
            tmp_path / "base",
            *args[:-1],
            tmp_path / "mismatch",
        )
    with pytest.raises(KeyError, match=rf"{tmp_path / 'states/test'}/captions.parquet: no states for captions"):
        CaptionStates(tmp_path / "states/test").lookup(["never evaluated"])
    narrow = tmp_path / "states/narrow"  # the states of one language: the batches' other captions have none
    caption_states(
        {**states, "split": "train", "languages": LANGS[:1], "captions": "all"},
        tmp_path / "base",
        tmp_path / "corpus/train",
        narrow,
    )
    with pytest.raises(KeyError, match=rf"{narrow}: no states for \d+ of the \d+ captions in {tmp_path / 'batches'}"):
        train_lit(params, tmp_path / "base", tmp_path / "features", tmp_path / "batches", narrow, tmp_path / "narrow")
    assert not (tmp_path / "narrow").exists()  # refused before any step


def test_development_images_are_whole_near_duplicate_groups(tmp_path):
    """Images in groups of three siblings: the held-out (development) images are whole
    groups, so no training image has a sibling among them."""
    write_image_corpus(tmp_path / "corpus", 60, group_size=3)
    stats = build_image_text_batches(
        plan({"weights": {IMAGE_MIXED: 1.0}}, 8, development_fraction=0.2), tmp_path / "corpus/train", tmp_path / "out"
    )
    assert stats[IMAGE_MIXED] == 8
    group = lambda item: int(item) // 3  # noqa: E731  # the corpus's groups, from the item number
    held_out = {group(item) for item in read_batches(tmp_path / "out/validation").item_id}
    trained = {group(item) for item in read_batches(tmp_path / "out").item_id}
    assert held_out and trained and not held_out & trained
    recorded = json.loads((tmp_path / "out/stats.json").read_text())["validation"]
    assert recorded["items"] == 3 * recorded["groups"] == 12  # 20% of 60 images: 4 whole groups
