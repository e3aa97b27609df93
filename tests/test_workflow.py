"""The whole DAG on a tiny config in a temporary directory, then reruns after config edits."""

import json
import re
import subprocess
import sys
from pathlib import Path

import faiss
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import REPO
from hybridbatch import schema
from hybridbatch.evaluation import SUMMARY_COLUMNS

pytestmark = pytest.mark.workflow
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "2"]
STRATEGIES = ["X-X-mono", "X-Y", "hybrid"]


def tiny_config() -> dict:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["corpora"]["cldr-locales"]["languages"] = ["en", "de", "ru", "zh", "ar"]
    config["trainsets"]["cldr-locales"]["languages"] = ["en", "de", "ru", "zh"]  # ar unseen
    config["models"]["tiny-bert"]["source"].update(vocab_size=500, hidden_size=32, layers=1, heads=2)
    config["batching"].update(epochs=2, batch_size=16)
    config["search"]["top_k"] = 20
    return config


def snakemake(workdir: Path, *args: str) -> str:
    result = subprocess.run(
        SNAKEMAKE + ["--directory", str(workdir), "--configfile", str(workdir / "config.yaml"), *args],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def planned_jobs(workdir: Path) -> dict[str, int]:
    """Rule -> job count of a dry run."""
    output = snakemake(workdir, "--dry-run")
    if "Nothing to be done" in output:
        return {}
    table = output.split("Job stats:")[1].split("total")[0]
    return {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.M)}


def write_config(workdir: Path, config: dict) -> None:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("workflow")
    write_config(workdir, tiny_config())
    snakemake(workdir)
    return workdir


def test_every_artifact_has_its_schema(workdir):
    results = workdir / "results"
    for split in ("train", "test"):
        for name, table_schema in (("queries", schema.QUERIES), ("passages", schema.PASSAGES), ("qrels", schema.QRELS)):
            assert len(schema.read_parquet(results / f"corpora/cldr-locales/{split}/{name}.parquet", table_schema))
    pairs = schema.read_parquet(results / "train/cldr-locales/pairs.parquet", schema.PAIRS)
    assert set(pairs.query_lang) == {"en", "de", "ru", "zh"}
    for strategy in STRATEGIES:
        batch_dir = results / f"batches/cldr-locales/{strategy}/s0"
        for shard in batch_dir.glob("shard-*.parquet"):
            schema.check_schema(pq.read_schema(shard), schema.BATCHES, shard)
        assert json.loads((batch_dir / "stats.json").read_text())["batches"] > 0
        model = results / f"models/tiny-bert/cldr-locales.{strategy}.s0"
        assert (model / "model.safetensors").is_file() and (model / "modules.json").is_file()
    for variant in ["zero-shot"] + [f"cldr-locales.{s}.s0" for s in STRATEGIES]:
        embeddings = results / f"embeddings/tiny-bert/{variant}/cldr-locales"
        assert faiss.read_index(str(embeddings / "index-all.faiss")).ntotal == pq.read_metadata(embeddings / "passages.parquet").num_rows
        for setting in ("mono", "cross", "multi"):
            run = schema.read_parquet(results / f"runs/tiny-bert/{variant}/cldr-locales/{setting}.parquet", schema.RUN)
            assert run["rank"].min() == 1
        per_query = pd.read_parquet(results / f"metrics/tiny-bert/{variant}/cldr-locales/per_query.parquet")
        assert set(per_query.setting) == {"mono", "cross", "multi"}


def test_tables_have_the_paper_shape(workdir):
    summary = pd.read_csv(workdir / "results/tables/summary.csv")
    assert list(summary.columns) == SUMMARY_COLUMNS
    assert set(summary.setting) == {"mono", "cross", "multi"}
    assert {"map", "recall@1", "recall@10", "ndcg@10", "mrr@10", "language_bias"} <= set(summary.metric)
    bounded = summary.metric != "language_bias"
    assert summary.value[bounded].between(0, 1).all() and (summary.value[~bounded] >= 0).all()
    table = pd.read_csv(workdir / "results/tables/map.csv", header=[0, 1], index_col=[0, 1])
    assert table.shape == (1 + len(STRATEGIES), 3)
    assert table.index.get_level_values(1)[0] == "zero-shot"
    assert (workdir / "results/tables/map.md").read_text().count("\n") == 2 + 1 + len(STRATEGIES)
    bias = pd.read_csv(workdir / "results/tables/language_bias.csv", header=[0, 1], index_col=[0, 1])
    assert bias.shape == (1 + len(STRATEGIES), 1)
    assert (workdir / "results/plots/map_by_setting.png").stat().st_size > 0


def test_second_run_has_nothing_to_do(workdir):
    assert planned_jobs(workdir) == {}


def test_evaluation_knob_reruns_only_evaluation_and_tables(workdir):
    config = tiny_config()
    config["evaluation"]["recall_at"] = [1, 5, 10, 50]
    write_config(workdir, config)
    assert planned_jobs(workdir) == {"evaluate": 1 + len(STRATEGIES), "tables": 1, "all": 1}
    snakemake(workdir)
    summary = pd.read_csv(workdir / "results/tables/summary.csv")
    assert "recall@50" in set(summary.metric) and "recall@100" not in set(summary.metric)


def test_alpha_change_rebuilds_batches_onwards_but_not_corpora_or_pairs(workdir):
    config = tiny_config()
    config["evaluation"]["recall_at"] = [1, 5, 10, 50]
    config["strategies"]["hybrid"]["alpha"] = 0.25
    write_config(workdir, config)
    assert planned_jobs(workdir) == {
        "batches": 1, "train": 1, "embed": 1, "search": 1, "evaluate": 1, "tables": 1, "all": 1
    }


def test_config_typo_names_the_key(workdir):
    config = tiny_config()
    config["training"]["learnin_rate"] = 1e-3
    write_config(workdir, config)
    result = subprocess.run(
        SNAKEMAKE + ["--directory", str(workdir), "--configfile", str(workdir / "config.yaml"), "-n"],
        capture_output=True, text=True,
    )
    assert result.returncode != 0
    assert "learnin_rate" in result.stdout + result.stderr


def test_lint_is_clean():
    result = subprocess.run(SNAKEMAKE + ["--lint"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
