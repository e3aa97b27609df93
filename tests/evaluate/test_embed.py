"""The tests of `hybridbatch/evaluate/embed.py`."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from evaluation_helpers import DESCRIPTOR, METRICS

from hybridbatch.artifacts import schema
from hybridbatch.artifacts.vectors import embeddings_table
from hybridbatch.evaluate import ranks
from hybridbatch.evaluate import text as evaluation


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
