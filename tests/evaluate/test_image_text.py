"""The tests of `hybridbatch/evaluate/image_text.py`."""

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from conftest import TINY_MODEL
from image_text_helpers import LANGS, generated_test_split, read_batches, write_lit_inputs
from safetensors.torch import load_file

from hybridbatch.artifacts import schema
from hybridbatch.batch_types import CAPTION_CAPTION, IMAGE_MONO


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
    metrics = ["map", "recall@1", "recall@5", "recall@10", "ndcg@10", "mrr@10"]
    assert (
        pq.read_schema(tmp_path / "metrics/per_query.parquet").names
        == list(per_query.columns)
        == [
            "item_id",
            "qid",
            "n_relevant",
            *metrics,
            "rank_distance",
            "query_lang",
            "candidate_lang",
            "setting",
        ]
    )
    assert pq.read_schema(tmp_path / "metrics/by_language.parquet").names == [
        *metrics,
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
