"""The benchmarks' own logic (their timings are printed, never tested)."""

import importlib.util

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import REPO


def benchmark(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_training_speed_times_the_complete_batches_there_are(tmp_path, capsys):
    """The default run's X-X-mono batches have 11 batches with a hard negative in every row:
    asked for 12, the benchmark times those 11 instead of stopping."""
    complete_batches = benchmark("training_speed").complete_batches
    rows = pd.DataFrame(
        {"batch_id": [b for b in range(14) for _ in range(2)],
         "negative": [None if b in (3, 7, 9) and r == 1 else f"n{b}" for b in range(14) for r in range(2)]}
    )  # fmt: skip
    pq.write_table(pa.Table.from_pandas(rows), tmp_path / "shard-00000.parquet")
    chosen = complete_batches(tmp_path, 12)
    assert sorted(chosen.batch_id.unique()) == [b for b in range(14) if b not in (3, 7, 9)]
    assert "11 batches have a hard negative in every row; timing 11 steps" in capsys.readouterr().out
    assert sorted(complete_batches(tmp_path, 4).batch_id.unique()) == [0, 1, 2, 4]
    rows.loc[rows.batch_id > 0, "negative"] = None
    (tmp_path / "one").mkdir()
    pq.write_table(pa.Table.from_pandas(rows), tmp_path / "one" / "shard-00000.parquet")
    with pytest.raises(SystemExit, match="only 1 batches"):
        complete_batches(tmp_path / "one", 12)


def test_the_array_masks_equal_the_per_pair_reference_on_random_batches():
    """Several relevant images per caption, captions and images the qrels never name,
    repeated texts: the array masks (train/masks.py) equal the benchmark's reference."""
    import numpy as np
    import torch

    from hybridbatch.train.masks import Relevance, caption_false_negatives, text_false_negatives

    reference_masks = benchmark("masks_speed").reference_masks
    rng = np.random.default_rng(0)
    pairs = [(f"c{rng.integers(60)}", f"i{rng.integers(25)}") for _ in range(120)]  # some pairs twice
    pairs += [(f"c{c}", f"c{c}-img") for c in range(60)]  # caption-caption targets judged as captions too
    relevance, relevant_to = Relevance.from_pairs(pairs), {}
    for qid, pid in pairs:
        relevant_to.setdefault(qid, set()).add(pid)
    assert max(len(images) for images in relevant_to.values()) >= 3
    masked = {True: [0, 0], False: [0, 0]}  # (conflicts, duplicates) seen per batch kind
    for _ in range(40):
        n = int(rng.integers(1, 12))
        qids = [f"c{c}" for c in rng.integers(70, size=n)]  # c60-c69 have no judgment
        texts = [f"t{t}" for t in rng.integers(4, size=n)]
        images = {"qid": qids, "pid": [f"i{i}" for i in rng.integers(28, size=n)], "query": texts}
        captions = {"qid": qids, "pid": [f"c{c}" for c in rng.integers(70, size=n)], "positive": texts}
        for rows, image_batch in ((images, True), (captions, False)):
            found, expected = (
                caption_false_negatives(rows, image_batch, relevance),
                reference_masks(rows, image_batch, relevant_to),
            )
            for a, b in zip(found, expected):
                assert torch.equal(a, b), (rows, image_batch)
            masked[image_batch] = [seen + int(mask.sum()) for seen, mask in zip(masked[image_batch], found)]
        # the text track: queries against their positives then hard negatives, (qid, pid) looked up in the qrels
        pids = images["pid"] + [f"i{i}" for i in rng.integers(28, size=n)]
        texts = [f"t{t}" for t in rng.integers(4, size=2 * n)]
        relevant = (
            torch.tensor([[(qid, pid) in set(pairs) for pid in pids] for qid in qids]) & ~torch.eye(n, 2 * n).bool()
        )
        duplicate = torch.tensor([[text == texts[i] for text in texts] for i in range(n)])
        duplicate &= ~torch.eye(n, 2 * n).bool() & ~relevant
        found = text_false_negatives(qids, pids, texts, relevance)
        assert torch.equal(found[0], relevant) and torch.equal(found[1], duplicate)
        masked["text"] = [seen + int(mask.sum()) for seen, mask in zip(masked.get("text", [0, 0]), found)]
    assert all(seen > 0 for kind in masked.values() for seen in kind), masked


def test_the_startup_benchmark_sends_every_output_to_scratch_and_reads_the_inputs_in_place(tmp_path):
    scratch_outputs = benchmark("startup").scratch_outputs
    arguments = ["--params", "{}", "--base", "results/models/m", "--states", "results/s", "--out", "results/o",
                 "--tables", "results/t", "--plots", "results/p", "--record", "results/r.json"]  # fmt: skip
    moved = scratch_outputs(arguments, tmp_path)
    outputs = {
        moved[i + 1] for i, name in enumerate(moved[:-1]) if name in ("--out", "--tables", "--plots", "--record")
    }
    assert len(outputs) == 4 and all(path.startswith(str(tmp_path)) for path in outputs)
    assert moved[:6] == arguments[:6] and len(moved) == len(arguments)
