"""The whole DAG on a tiny config in a temporary directory, then reruns after config edits."""

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import REPO
from image_corpora_helpers import emoji_mirror, many_emoji_mirror
from slurm_cluster import local_cluster, why_not_here

from hybridbatch.artifacts import schema
from hybridbatch.models.encoders import BASE, TRAINED
from hybridbatch.names import SUMMARY_COLUMNS

pytestmark = pytest.mark.workflow
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "2"]
STRATEGIES = ["X-X-mono", "X-Y", "hybrid"]
IMAGE_STRATEGIES = ["mixed", "mono-translation"]  # of config.yaml's four, to keep the suite short


@functools.cache
def tiny_emoji_corpus() -> dict:
    """A generated mirror of the emoji tarballs (5 images named in en and ru), made once."""
    params = emoji_mirror(Path(tempfile.mkdtemp(prefix="emoji-")) / "mirror")
    return {**{k: v for k, v in params.items() if k != "name"}, "test_fraction": 0.4}


def tiny_config() -> dict:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["corpora"]["cldr-locales"]["languages"] = ["en", "de", "ru", "zh", "ar"]
    config["trainsets"]["cldr-locales"]["languages"] = ["en", "de", "ru", "zh"]  # ar unseen
    config["models"]["tiny-bert"]["source"].update(vocab_size=500, hidden_size=32, layers=1, heads=2)
    config["batching"].update(epochs=2, batch_size=16)
    config["training"].update(learning_rate=5e-4, freeze_embeddings=False)
    config["experiment"]["models"] = ["tiny-bert"]
    config["search"]["top_k"] = 20
    config["corpora"]["emoji"] = tiny_emoji_corpus()  # 3 train and 2 test images
    config["image_towers"]["efficientnet-lite0"].update(image_size=32, batch_size=4)
    image_text = config["image_text"]
    image_text.update(text_model="tiny-bert", max_length=16, train_languages=["en", "ru"])
    image_text["batching"].update(batch_size=2, steps=4)
    image_text["training"]["trainable_text_layers"] = 1
    image_text["evaluation"].update(languages=["en", "ru"], images=None, protocols=["first", "all"])
    image_text["strategies"] = {name: image_text["strategies"][name] for name in IMAGE_STRATEGIES}
    image_text["seeds"] = [0]
    return config


def snakemake(workdir: Path, *args: str) -> str:
    result = subprocess.run(
        SNAKEMAKE + [*args, "--directory", str(workdir), "--configfile", str(workdir / "config.yaml")],
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
        assert (model / TRAINED).is_file() and (model / BASE).is_file()
        assert not (model / "tokenizer.json").exists() and not (model / "modules.json").exists()  # the base's
    for variant in ["zero-shot"] + [f"cldr-locales.{s}.s0" for s in STRATEGIES]:
        embeddings = results / f"embeddings/tiny-bert/{variant}/cldr-locales"
        passages = pq.read_metadata(results / "corpora/cldr-locales/test/passages.parquet").num_rows
        assert pq.read_metadata(embeddings / "passages.parquet").num_rows == passages
        assert not list(embeddings.glob("*.faiss"))  # exact search streams passages.parquet: no index file
        for setting in ("mono", "cross", "multi"):
            run = schema.read_parquet(results / f"runs/tiny-bert/{variant}/cldr-locales/{setting}.parquet", schema.RUN)
            assert run["rank"].min() == 1
        per_query = pd.read_parquet(results / f"metrics/tiny-bert/{variant}/cldr-locales/per_query.parquet")
        assert set(per_query.setting) == {"mono", "cross", "multi"}


# What a one-node cluster without accounting needs on top of profiles/slurm: no account to
# charge, job states from squeue (sacct needs the accounting database), quick polling.
LOCAL_CLUSTER_OVERLAY = ["--slurm-no-account", "--slurm-status-command", "squeue",
                         "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "2"]  # fmt: skip


@pytest.mark.long
def test_the_slurm_profile_runs_the_workflow_on_a_real_cluster_with_the_local_results(workdir, tmp_path):
    """The tiny config through profiles/slurm on a one-node SLURM cluster started here
    (tests/slurm_cluster.py): every job but the target is a SLURM job with its rule's
    threads; the audit is clean; the tables, batches, models and metrics are the local
    run's bytes; no daemon is left running."""
    reason = why_not_here()
    if reason:
        pytest.skip(reason)
    run = tmp_path / "run"
    run.mkdir()
    write_config(run, tiny_config())
    jobs = planned_jobs(run)
    with local_cluster(tmp_path / "cluster"):
        result = subprocess.run(
            SNAKEMAKE + ["--directory", str(run), "--configfile", str(run / "config.yaml"),
                         "--profile", str(REPO / "profiles/slurm"), *LOCAL_CLUSTER_OVERLAY],
            capture_output=True,
            text=True,
        )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", output)
    assert len(set(submitted)) == sum(jobs.values()) - jobs["all"]
    assert not [name for name in ("slurmctld", "slurmd") if subprocess.run(["pgrep", "-x", name]).returncode == 0]
    assert hybridbatch(run, "audit", "results").returncode == 0
    files = sorted(str(path.relative_to(workdir)) for path in (workdir / "results/tables").glob("*.*"))
    assert len(files) > 20
    files += [f"{HYBRID_BATCHES}/shard-0000.parquet"]
    files += [f"results/models/tiny-bert/cldr-locales.{s}.s0/{name}" for s in STRATEGIES for name in (TRAINED, BASE)]
    files += [
        f"results/metrics/tiny-bert/{v}/cldr-locales/{name}"
        for v in ["zero-shot"] + [f"cldr-locales.{s}.s0" for s in STRATEGIES]
        for name in ("summary.csv", "per_query.parquet")
    ]
    for name in (name for name in files if not name.endswith("manifest.json")):
        assert (run / name).read_bytes() == (workdir / name).read_bytes(), name
    manifest = json.loads((run / "results/models/tiny-bert/cldr-locales.hybrid.s0/manifest.json").read_text())
    configured = tiny_config()["resources"]["default"]["threads"]
    assert manifest["threads"]["OMP_NUM_THREADS"] == str(configured) and manifest["threads"]["torch"] == configured


def test_tables_have_the_paper_shape(workdir):
    summary = pd.read_csv(workdir / "results/tables/summary.csv")
    assert list(summary.columns) == SUMMARY_COLUMNS
    summary = summary[summary.corpus == "cldr-locales"]  # the text track
    assert set(summary.setting) == {"mono", "cross", "multi"}
    assert {"map", "recall@1", "recall@10", "ndcg@10", "mrr@10", "language_bias"} <= set(summary.metric)
    bounded = summary.metric != "language_bias"
    assert summary.value[bounded].between(0, 1).all() and (summary.value[~bounded] >= 0).all()
    table = pd.read_csv(workdir / "results/tables/map.csv", header=[0, 1], index_col=[0, 1])
    assert table.shape == (1 + len(STRATEGIES), 3)
    assert table.index.get_level_values(1)[0] == "(a) zero-shot"
    markdown_rows = [
        line for line in (workdir / "results/tables/map.md").read_text().splitlines() if line.startswith("|")
    ]
    assert len(markdown_rows) == 2 + 1 + len(STRATEGIES)
    bias = pd.read_csv(workdir / "results/tables/language_bias.csv", header=[0, 1], index_col=[0, 1])
    assert bias.shape == (1 + len(STRATEGIES), 1)
    assert (workdir / "results/tables/map.tex").read_text().startswith("\\begin{tabular}")
    per_language = pd.read_csv(workdir / "results/tables/per_language_cldr-locales.csv", header=[0, 1], index_col=0)
    assert per_language.shape == (5 + 1, 4 * (1 + len(STRATEGIES)))  # languages + average; 4 columns a run
    tests = pd.read_csv(workdir / "results/tables/significance.csv")
    tests = tests[tests.family == "text"]
    n_runs = 1 + len(STRATEGIES)
    assert len(tests) == n_runs * (n_runs - 1) // 2 * 4  # pairs x (3 settings of mAP + bias)
    assert tests.p_holm.between(0, 1).all() and (tests.p_holm >= tests.p_value).all()
    for plot in ["map_by_setting", "alpha_cldr-locales", "heatmap_cldr-locales_tiny-bert_hybrid-s0"]:
        assert (workdir / f"results/plots/{plot}.png").stat().st_size > 0


def test_second_run_has_nothing_to_do(workdir):
    assert planned_jobs(workdir) == {}


def test_evaluation_knob_reruns_only_evaluation_and_tables(workdir, tmp_path):
    copy = tmp_path / "copy"  # the run and Snakemake's records of it, mtimes kept: the shared run stays as it is
    shutil.copytree(workdir, copy, symlinks=True)
    config = tiny_config()
    config["evaluation"]["recall_at"] = [1, 5, 10, 50]
    write_config(copy, config)
    both = {"evaluate": 1 + len(STRATEGIES), "evaluate_image_text": len(IMAGE_STRATEGIES), "tables": 1, "all": 1}
    assert planned_jobs(copy) == both  # recall_at is both tracks' knob
    config["significance"]["permutations"] = 500
    write_config(copy, config)
    assert planned_jobs(copy) == both
    snakemake(copy)
    summary = pd.read_csv(copy / "results/tables/summary.csv")
    assert "recall@50" in set(summary.metric) and "recall@100" not in set(summary.metric)


def test_alpha_change_rebuilds_batches_onwards_but_not_corpora_or_pairs(workdir):
    config = tiny_config()
    config["strategies"]["hybrid"]["alpha"] = 0.25
    write_config(workdir, config)
    try:
        assert planned_jobs(workdir) == {
            "batches": 1,
            "train": 1,
            "embed": 1,
            "search": 1,
            "evaluate": 1,
            "tables": 1,
            "all": 1,
        }
    finally:
        write_config(workdir, tiny_config())


def test_image_text_track_runs_end_to_end_from_real_image_bytes(workdir):
    results = workdir / "results"
    features = pq.read_table(results / "features/efficientnet-lite0/emoji/train.parquet")
    assert features.num_rows == 3
    for strategy in IMAGE_STRATEGIES:
        stats = json.loads((results / f"image_text/batches/emoji/{strategy}/s0/stats.json").read_text())
        assert stats["batches"] == 4 and sum(stats["batch_types"].values()) == 4
        model = results / f"image_text/models/emoji/{strategy}.s0"
        assert {"model.json", "image_projection.safetensors", "training_log.csv"} <= {p.name for p in model.iterdir()}
        inputs = json.loads((model / "manifest.json").read_text())["inputs"]
        assert any(path.endswith("caption_states/emoji/train") for path in inputs)  # trained from the states
    stats = json.loads((results / "image_text/batches/emoji/mixed/s0/stats.json").read_text())
    assert stats["batch_types"]["image-caption-mixed"] == 4
    groups = pd.read_parquet(results / "corpora/emoji/groups.parquet")  # the corpus manifest counts them per split
    recorded = json.loads((results / "corpora/emoji/manifest.json").read_text())["summary"]
    for split, rows in groups.groupby("split"):
        assert recorded[split]["items"] == len(rows) and recorded[split]["groups"] == rows.group.nunique()
    summary = pd.read_csv(results / "tables/summary.csv")
    image = summary[summary.corpus == "emoji"]
    assert set(image.strategy) == set(IMAGE_STRATEGIES) and set(image.model) == {"tiny-bert+efficientnet-lite0"}
    tasks = ("t2i", "i2t", "i2t-multi", "t2t-cross", "t2i-trained", "i2t-trained")  # every language is trained
    assert set(image.setting) == {f"{t}/{p}" for t in tasks for p in ("first", "all")}
    assert set(image[image.metric == "language_bias"].setting) == {"i2t-multi/first", "i2t-multi/all"}
    table = pd.read_csv(results / "tables/image_text.csv", header=[0, 1, 2], index_col=[0, 1])
    assert len(table) == len(IMAGE_STRATEGIES) and ("first", "t2i", "recall@1") in table.columns
    tests = pd.read_csv(results / "tables/significance.csv")
    image_tests = tests[tests.family == "image-text"]
    # pairs x settings (R@1 of t2i, i2t and their trained groups, mAP, bias; two protocols); 2 test images
    assert len(image_tests) == 1 * (8 + 2 + 2) and (image_tests["items"] == 2).all()
    assert (results / "plots/image_text_by_language.png").stat().st_size > 0
    assert (results / "plots/image_text_validation.png").stat().st_size > 0


def test_image_text_knobs_rebuild_only_what_they_affect(workdir):
    config = tiny_config()
    config["image_text"]["evaluation"]["protocols"] = ["first"]
    write_config(workdir, config)
    try:
        evaluation = {"caption_states": 1, "evaluate_image_text": len(IMAGE_STRATEGIES), "tables": 1, "all": 1}
        assert planned_jobs(workdir) == evaluation  # the evaluated captions' states, not the trained ones'
        config = tiny_config()
        config["image_text"]["strategies"]["mono-translation"]["weights"]["caption-caption"] = 0.25
        write_config(workdir, config)
        assert planned_jobs(workdir) == {
            "image_text_batches": 1,
            "train_lit": 1,
            "evaluate_image_text": 1,
            "tables": 1,
            "all": 1,
        }
    finally:
        write_config(workdir, tiny_config())


def test_config_typo_names_the_key(workdir):
    config = tiny_config()
    config["training"]["learnin_rate"] = 1e-3
    (workdir / "typo.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        SNAKEMAKE + ["--directory", str(workdir), "--configfile", str(workdir / "typo.yaml"), "-n"],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "learnin_rate" in result.stdout + result.stderr


def hybridbatch(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "workflow")}
    return subprocess.run(
        [sys.executable, "-m", "hybridbatch", *args], capture_output=True, text=True, cwd=workdir, env=env
    )


def test_audit_passes_then_names_a_tampered_shard_and_everything_downstream(workdir):
    assert hybridbatch(workdir, "audit", "results").returncode == 0
    shard = workdir / "results/batches/cldr-locales/hybrid/s0/shard-0000.parquet"
    original = shard.read_bytes()
    shard.write_bytes(original[:100] + bytes([original[100] ^ 1]) + original[101:])
    try:
        result = hybridbatch(workdir, "audit", "results")
    finally:
        shard.write_bytes(original)
    assert result.returncode == 1
    failing = set(re.findall(r"^FAIL (\S+)$", result.stdout, flags=re.M))
    assert "changed file results/batches/cldr-locales/hybrid/s0/shard-0000.parquet" in result.stdout
    assert failing == {
        "results/batches/cldr-locales/hybrid/s0",
        "results/models/tiny-bert/cldr-locales.hybrid.s0",
        "results/embeddings/tiny-bert/cldr-locales.hybrid.s0/cldr-locales",
        "results/runs/tiny-bert/cldr-locales.hybrid.s0/cldr-locales",
        "results/metrics/tiny-bert/cldr-locales.hybrid.s0/cldr-locales",
        "results/tables",
    }
    assert "results/tables <- results/metrics/tiny-bert/cldr-locales.hybrid.s0/cldr-locales <- " in result.stdout


def test_quick_audit_hashes_only_files_modified_after_their_manifest(workdir, monkeypatch):
    from hybridbatch.artifacts import manifest
    from hybridbatch.report import audit

    hashed = []
    original_hash = manifest.sha256_file
    monkeypatch.setattr(manifest, "sha256_file", lambda path: hashed.append(Path(path)) or original_hash(path))
    monkeypatch.chdir(workdir)
    shard = Path("results/batches/cldr-locales/X-Y/s0/shard-0001.parquet")
    original = shard.read_bytes()
    shard.write_bytes(original[:100] + bytes([original[100] ^ 1]) + original[101:])  # same size, new mtime
    try:
        assert audit.audit("results/batches", quick=True) == 1
        batches = [path for path in hashed if Path("results/batches") in path.parents]  # (tables are re-derived)
        assert shard in batches and len(batches) <= 3  # the edited shard (and other tests' restored ones)
    finally:
        shard.write_bytes(original)
    hashed.clear()
    assert audit.audit("results/batches", quick=True) == 0
    assert audit.audit("results/batches") == 0
    assert len([path for path in hashed if Path("results/batches") in path.parents]) > 10  # the default: every file


def test_audit_reports_a_deleted_model_file_as_missing(workdir):
    weights = workdir / "results/models/tiny-bert/cldr-locales.X-Y.s0/trained.safetensors"
    kept = weights.with_name("kept")
    weights.rename(kept)
    try:
        result = hybridbatch(workdir, "audit", "results")
    finally:
        kept.rename(weights)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "missing file results/models/tiny-bert/cldr-locales.X-Y.s0/trained.safetensors" in result.stdout


def test_lineage_of_a_summary_row_reaches_the_batches_and_raw_data(workdir):
    summary = pd.read_csv(workdir / "results/tables/summary.csv")
    row = int(summary.index[(summary.strategy == "X-Y") & (summary.metric == "map")][0])
    result = hybridbatch(workdir, "lineage", "results/tables/summary.csv", "--row", str(row))
    assert result.returncode == 0, result.stderr
    assert "results/metrics/tiny-bert/cldr-locales.X-Y.s0/cldr-locales [evaluate]" in result.stdout
    assert "results/batches/cldr-locales/X-Y/s0 [batches]" in result.stdout
    assert "results/corpora/cldr-locales/raw [download]" in result.stdout
    assert "hybrid" not in result.stdout.split("\n", 1)[1]


def test_runs_table_comes_from_the_manifests(workdir):
    result = hybridbatch(workdir, "runs", "results", "--csv", "runs.csv")
    assert result.returncode == 0, result.stderr
    runs = pd.read_csv(workdir / "runs.csv")
    image = runs[runs.corpus == "emoji"].set_index("strategy")
    assert sorted(image.index) == sorted(IMAGE_STRATEGIES) and image.loc["mixed", "realised image-caption-mixed"] == 1.0
    assert image.loc["mono-translation", "training.objective"] == "symmetric-info-nce"
    runs = runs[runs.corpus == "cldr-locales"]
    assert sorted(runs.strategy) == sorted(STRATEGIES + ["zero-shot"])
    assert {"alpha", "seed", "training.learning_rate", "realised_alpha", "multi map", "multi language_bias"} <= set(
        runs.columns
    )
    trained = runs.set_index("strategy").drop("zero-shot")
    assert trained.loc["X-X-mono", "realised_alpha"] == 1.0 and trained.loc["X-Y", "realised_alpha"] == 0.0


@pytest.mark.long
def test_data_batch_and_base_model_manifests_are_identical_across_fresh_runs(workdir, tmp_path):
    write_config(tmp_path, tiny_config())
    targets = [f"results/batches/cldr-locales/{s}/s0" for s in STRATEGIES] + ["results/models/tiny-bert/zero-shot"]
    snakemake(tmp_path, *targets)
    from hybridbatch.artifacts.manifest import manifest_hash

    artifacts = [
        "results/corpora/cldr-locales/raw",
        "results/corpora/cldr-locales",
        "results/train/cldr-locales",
    ] + targets
    for artifact in artifacts:
        first, second = (json.loads((root / artifact / "manifest.json").read_text()) for root in (workdir, tmp_path))
        assert manifest_hash(first) == manifest_hash(second), artifact
        assert first["files"] and first["code"]["sources_sha256"]


def test_html_report_holds_tables_plots_batch_statistics_and_training_curves(workdir):
    snakemake(workdir, "--report", str(workdir / "report.html"))
    html = (workdir / "report.html").read_text(errors="replace")
    assert "language_pairs.png" in html and "map_by_setting.png" in html and "significance.csv" in html
    assert "Training curves" in html and "training_curves.png" in html


def test_lint_is_clean():
    result = subprocess.run(SNAKEMAKE + ["--lint"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_paper_config_plans_the_full_grid(tmp_path):
    """config/paper.yaml (network + GPU) as a dry run: every source, model and strategy."""
    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text())
    result = subprocess.run(
        SNAKEMAKE + ["--directory", str(tmp_path), "--configfile", str(REPO / "config/paper.yaml"), "-n"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = result.stdout.split("Job stats:")[1].split("total")[0]
    jobs = {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.M)}
    # 4 corpora (XQuAD-R, MLQA-R, MIRACL, mMARCO); 2 models x 3 strategies; 2 x 4 variants x 3 corpora
    # MIRACL's passages in 64 shards, one job each, for each of the 8 models
    assert jobs == {"download": 4, "prepare": 4, "pairs": 1, "batches": 3, "base_model": 2, "train": 6,
                    "embed_shard": 8 * 64, "embed": 24, "search": 24, "evaluate": 24, "tables": 1, "all": 1}  # fmt: skip


def dry_run_jobs(output: str) -> list[dict]:
    """Each job of a dry run's listing: its rule and resources (name -> value text)."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        resources = re.search(r"^\s+resources: (.*)$", block, flags=re.M)
        if rule and resources:
            pairs = (item.split("=", 1) for item in resources.group(1).split(", "))
            jobs.append({"rule": rule.group(1), **{key: value for key, value in pairs}})
    return jobs


def test_slurm_profile_hands_each_job_the_resources_of_its_rule(tmp_path):
    """config/paper.yaml with profiles/slurm (the executor plugin installed, no SLURM needed
    for a dry run): every job gets the mem_mb, runtime and gpu its rule has in config."""
    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text())
    result = subprocess.run(
        SNAKEMAKE
        + [
            "--directory",
            str(tmp_path),
            "--profile",
            str(REPO / "profiles/slurm"),
            "--configfile",
            str(REPO / "config/paper.yaml"),
            "-n",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    paper = yaml.safe_load((REPO / "config/paper.yaml").read_text())
    jobs = dry_run_jobs(result.stdout)
    assert {job["rule"] for job in jobs} >= {"download", "train", "embed", "search", "evaluate", "tables"}
    defaults = {
        **yaml.safe_load((REPO / "config.yaml").read_text())["resources"]["default"],
        **paper["resources"]["default"],
    }
    for job in (job for job in jobs if job["rule"] != "all"):  # the target rule runs nothing
        expected = {**defaults, **paper["resources"].get(job["rule"], {})}
        assert int(job["mem_mb"]) == expected["mem_mb"] and int(job["runtime"]) == expected["runtime"], job
        assert int(job["gpu"]) == expected["gpu"], job  # `--resources gpu=N` runs N GPU jobs at once
        assert int(job["gpu"]) == (job["rule"] in ("train", "embed_shard", "embed")), job


def test_the_driver_needs_neither_torch_nor_faiss_nor_pandas(tmp_path):
    """Parsing and planning the workflow (a dry run) with the stages' libraries made
    unimportable from this checkout's code (Snakefile, rules, package): a login node or an
    --sdm conda driver needs snakemake and PyYAML only. (Installed Snakemake plugins may
    import what they like.)"""
    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text())
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] not in {sorted(HEAVY)!r}:\n"
        "            return None\n"
        "        frame = sys._getframe(1)\n"
        "        while frame is not None:\n"
        f"            if frame.f_code.co_filename.startswith({str(REPO / 'workflow')!r}) or "
        f"frame.f_code.co_filename == {str(REPO / 'Snakefile')!r}:\n"
        "                raise ImportError(f'{name} is blocked: the driver must not import it')\n"
        "            frame = frame.f_back\n"
        "sys.meta_path.insert(0, Block())\n"
        "from snakemake.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            blocker,
            "-s",
            str(REPO / "Snakefile"),
            "--cores",
            "2",
            "--directory",
            str(tmp_path),
            "-n",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Job stats:" in result.stdout


HEAVY = {
    "torch",
    "faiss",
    "pandas",
    "pyarrow",
    "numpy",
    "babel",
    "transformers",
    "sentence_transformers",
    "matplotlib",
    "scipy",
}


# --- artifacts that cannot be fooled ------------------------------------------------------

HYBRID_BATCHES = "results/batches/cldr-locales/hybrid/s0"


@pytest.fixture
def scratch(workdir, tmp_path) -> Path:
    """A copy of the finished workflow directory to tamper with."""
    shutil.copytree(workdir / "results", tmp_path / "results", symlinks=True)
    shutil.copy(workdir / "config.yaml", tmp_path / "config.yaml")
    return tmp_path


def rehash(manifest_path: Path, name: str) -> None:
    """Update one file's record in a manifest, as someone covering an edit would."""
    from hybridbatch.fetch.download import sha256_file

    manifest = json.loads(manifest_path.read_text())
    path = manifest_path.parent / name
    manifest["files"][name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    manifest_path.write_text(json.dumps(manifest))


def edit_summary(root: Path) -> None:
    summary = root / "results/tables/summary.csv"
    summary.write_text(summary.read_text().replace(",map,0.", ",map,0.9", 1))
    rehash(root / "results/tables/manifest.json", "summary.csv")


TAMPERING = {
    "stray shard": (lambda root: shutil.copy(root / HYBRID_BATCHES / "shard-0000.parquet", root / HYBRID_BATCHES / "shard-0000b.parquet"),
                    f"unlisted file {HYBRID_BATCHES}/shard-0000b.parquet"),
    "missing shard": (lambda root: (root / HYBRID_BATCHES / "shard-0001.parquet").unlink(),
                      f"missing file {HYBRID_BATCHES}/shard-0001.parquet"),
    "deleted tables": (lambda root: shutil.rmtree(root / "results/tables"), "missing artifact results/tables"),
    "deleted strategy": (lambda root: shutil.rmtree(root / "results/metrics/tiny-bert/cldr-locales.X-Y.s0"),
                         "missing artifact results/metrics/tiny-bert/cldr-locales.X-Y.s0/cldr-locales"),
    "re-hashed summary edit": (edit_summary, "results/tables/summary.csv differs from what its inputs give when re-derived"),
    "malformed manifest": (lambda root: (root / "results/train/cldr-locales/manifest.json").write_text("{not json"),
                           "results/train/cldr-locales/manifest.json: malformed manifest"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_audit_names_every_kind_of_tampering(scratch, case):
    tamper, message = TAMPERING[case]
    assert hybridbatch(scratch, "audit", "results").returncode == 0
    tamper(scratch)
    result = hybridbatch(scratch, "audit", "results")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert message in result.stdout, result.stdout[-3000:]


@pytest.mark.parametrize("case", ["stray shard", "missing shard"])
def test_a_stage_refuses_an_input_directory_that_does_not_match_its_manifest(scratch, case):
    tamper, message = TAMPERING[case]
    tamper(scratch)
    manifest = json.loads((scratch / "results/models/tiny-bert/cldr-locales.hybrid.s0/manifest.json").read_text())
    result = hybridbatch(
        scratch,
        "train",
        "--params",
        json.dumps(manifest["params"]),
        "--base",
        "results/models/tiny-bert/zero-shot",
        "--batches",
        HYBRID_BATCHES,
        "--out",
        "retrained",
    )
    assert (
        result.returncode != 0 and message.split(" ", 2)[2] in result.stderr and message.split(" ")[0] in result.stderr
    )
    assert not (scratch / "retrained").exists()


def test_a_moved_or_symlinked_results_directory_audits_the_same(scratch, tmp_path_factory):
    moved = tmp_path_factory.mktemp("moved")
    shutil.move(str(scratch / "results"), str(moved / "results"))
    assert hybridbatch(moved, "audit", "results").returncode == 0
    (scratch / "results").symlink_to(moved / "results")  # results on a scratch disk, as on clusters
    assert hybridbatch(scratch, "audit", "results").returncode == 0
    subtree = hybridbatch(scratch, "audit", "results/models")
    assert subtree.returncode == 0 and "has no manifest" not in subtree.stdout, subtree.stdout


def test_lineage_row_out_of_range_is_a_clear_error(workdir):
    result = hybridbatch(workdir, "lineage", "results/tables/summary.csv", "--row", "100000")
    assert result.returncode == 2 and "out of range" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.long
def test_results_do_not_depend_on_cores(workdir, tmp_path):
    """resources.<rule>.threads, not --cores, sets every stage's threads: --cores 1 gives the same bytes
    (the text track; the image track's stages take their threads from the same setting)."""
    config = tiny_config()
    config["image_text"] = None
    write_config(tmp_path, config)
    result = subprocess.run(
        SNAKEMAKE[:-1] + ["1", "--directory", str(tmp_path), "--configfile", str(tmp_path / "config.yaml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    files = [f"{HYBRID_BATCHES}/shard-0000.parquet"]
    files += [f"results/models/tiny-bert/cldr-locales.{s}.s0/{name}" for s in STRATEGIES for name in (TRAINED, BASE)]
    files += [
        f"results/metrics/tiny-bert/{v}/cldr-locales/{name}"
        for v in ["zero-shot"] + [f"cldr-locales.{s}.s0" for s in STRATEGIES]
        for name in ("summary.csv", "per_query.parquet")
    ]
    for name in files:
        assert (tmp_path / name).read_bytes() == (workdir / name).read_bytes(), name
    threads = json.loads((tmp_path / "results/models/tiny-bert/cldr-locales.hybrid.s0/manifest.json").read_text())[
        "threads"
    ]
    configured = tiny_config()["resources"]["default"]["threads"]
    assert threads["OMP_NUM_THREADS"] == str(configured) and threads["torch"] == configured


def config_dry_run(tmp_path, configfile: str) -> dict[str, int]:
    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text())
    result = subprocess.run(
        SNAKEMAKE + ["--directory", str(tmp_path), "--configfile", str(REPO / configfile), "-n"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = result.stdout.split("Job stats:")[1].split("total")[0]
    return {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.M)}


@pytest.mark.parametrize("configfile", ["config.yaml", "config/xm3600_hybrid.yaml"])
def test_each_rule_passes_its_stage_exactly_the_declared_paths(tmp_path, configfile):
    """The rules' shell commands are built from hybridbatch.stages: every job of the plan runs
    its stage with --threads, --params and one flag per declared path (an optional one may be
    absent), and nothing else."""
    import shlex

    from hybridbatch.stages import STAGES

    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text())
    result = subprocess.run(
        SNAKEMAKE + ["--directory", str(tmp_path), "--configfile", str(REPO / configfile), "-n", "-p"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    commands = re.findall(r"python -m hybridbatch (\S+) (.*?) > \S+ 2>&1", result.stdout)
    assert {stage for stage, _ in commands} >= {"download", "prepare", "train-lit", "evaluate-image-text", "tables"}
    for stage, arguments in commands:
        flags = [token for token in shlex.split(arguments) if token.startswith("--")]
        declared = {f"--{path.name.replace('_', '-')}": path for path in STAGES[stage].paths}
        assert len(flags) == len(set(flags)) and flags[:2] == ["--threads", "--params"], (stage, flags)
        assert set(flags[2:]) <= set(declared), (stage, flags)
        assert {flag for flag, path in declared.items() if not path.optional} <= set(flags), (stage, flags)


def test_a_users_own_files_become_an_artifact_through_the_import_rule(tmp_path):
    """config `imports.<name>`: `snakemake results/imports/<name>` copies the files in with a
    manifest that the audit verifies; a name not configured is refused naming its key."""
    own = tmp_path / "own"
    (own / "sub").mkdir(parents=True)
    (own / "sub/pairs.tsv").write_text("q\tp\n")
    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text())
    (tmp_path / "imports.yaml").write_text(f"imports:\n  mine: {own}\n")
    run = SNAKEMAKE + ["--directory", str(tmp_path), "--configfile", str(tmp_path / "imports.yaml"), "--"]
    result = subprocess.run(run + ["results/imports/mine"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "results/imports/mine/sub/pairs.tsv").read_text() == "q\tp\n"
    audit = subprocess.run(
        [sys.executable, "-m", "hybridbatch", "audit", str(tmp_path / "results")],
        capture_output=True,
        text=True,
        cwd=REPO / "workflow",
    )
    assert "1 of 1 artifacts verified, 0 failing" in audit.stdout, (
        audit.stdout + audit.stderr
    )  # no run record: no tables
    refused = subprocess.run(run + ["results/imports/other"], capture_output=True, text=True)
    assert refused.returncode != 0 and "config key imports.other: not set" in refused.stdout + refused.stderr


def test_xm3600_zero_shot_config_plans_both_models(tmp_path):
    """config/xm3600.yaml (network + GPU): mSigLIP and SigLIP 2, each with its own image
    tower's features, evaluated untrained on XM3600 (beside config.yaml's text track)."""
    jobs = config_dry_run(tmp_path, "config/xm3600.yaml")
    assert jobs["image_features"] == 2 and jobs["evaluate_image_text"] == 2 and "train_lit" not in jobs
    assert jobs["base_model"] == 3  # msiglip, siglip2 and the text track's e5


def test_xm3600_hybrid_config_plans_every_strategy_and_seed(tmp_path):
    """config/xm3600_hybrid.yaml: LiT of mSigLIP on COCO-35L, its 8 strategies (config.yaml's four and four of its own) x 3
    seeds, each and the untrained model evaluated on XM3600; features of both corpora by
    mSigLIP's tower; no caption states (the whole text tower trains)."""
    jobs = config_dry_run(tmp_path, "config/xm3600_hybrid.yaml")
    assert jobs["train_lit"] == jobs["image_text_batches"] == 24
    assert jobs["evaluate_image_text"] == 25 and jobs["image_features"] == 2 and "caption_states" not in jobs


def rehearsal_module():
    """benchmarks/rehearsal.py: COCO-35L and XM3600 writers in their published formats, the random SigLIP."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("rehearsal", REPO / "benchmarks/rehearsal.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_shipped_image_text_config(workdir: Path, configfile: str, settings: dict, languages: list[str]) -> dict:
    """Snakemake on config.yaml, the shipped `configfile` and `settings` over them, up to
    every image-text evaluation (on XM3600, in every language); the merged config."""
    from sources_helpers import shipped_config

    from hybridbatch.config import image_text_runs, local_paths_win
    from hybridbatch.names import artifact

    settings["resources"] = {"default": {"threads": 1}}  # this machine's, not a GPU node's 8: two jobs at once
    (workdir / "overlay.yaml").write_text(yaml.safe_dump(settings))
    (workdir / "config.yaml").write_text((REPO / "config.yaml").read_text())
    config = shipped_config(configfile, workdir / "overlay.yaml")
    local_paths_win(config)
    targets = [
        f"{artifact('image_text_metrics', corpus='xm3600', run=run.name)}/summary.csv"
        for run in image_text_runs(config)
    ]
    result = subprocess.run(
        SNAKEMAKE
        + ["--directory", str(workdir), "--configfile", str(REPO / configfile), str(workdir / "overlay.yaml")]
        + ["--", *targets],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for target in targets:
        assert {"t2i/first", "i2t/all", "i2t-multi/all"} <= set(pd.read_csv(workdir / target).setting)
        by_language = pd.read_parquet((workdir / target).parent / "by_language.parquet")
        assert set(by_language[by_language.setting == "t2i/all"].query_lang) == set(languages)
    return config


@pytest.mark.long
def test_the_shipped_zero_shot_config_evaluates_msiglip_and_siglip2_on_generated_data(tmp_path):
    """config/xm3600.yaml as shipped, over config.yaml, overriding only the models (random
    SigLIP and SigLIP 2 checkpoints read by path) and the mirror (XM3600 in its published
    format, 36 languages): each model's own tower featurises the images and both are
    evaluated untrained under both protocols."""
    from dual_encoders import tiny_siglip, tiny_siglip2

    rehearsal = rehearsal_module()
    _, languages = rehearsal.config_languages()
    rehearsal.write_xm3600(tmp_path / "mirrors/xm3600", languages, np.random.default_rng(0), images=5, captions=360)
    settings = {
        "corpora": {"xm3600": {"mirror": str(tmp_path / "mirrors/xm3600")}},
        "models": {
            "msiglip": {"source": {"path": str(tiny_siglip(tmp_path / "msiglip"))}},
            "siglip2": {"source": {"path": str(tiny_siglip2(tmp_path / "siglip2"))}},
        },
    }
    config = run_shipped_image_text_config(tmp_path, "config/xm3600.yaml", settings, languages)
    assert config["image_text"]["zero_shot"] == ["msiglip", "siglip2"] and not config["image_text"]["seeds"]
    from hybridbatch.artifacts.vectors import read_embeddings

    features = [read_embeddings(tmp_path / f"results/features/{tower}/xm3600/test.parquet")
                for tower in ("msiglip-vision", "siglip2-vision")]  # fmt: skip
    assert features[0][0] == features[1][0] and len(features[0][0]) == 5  # the same 5 images, each tower's own
    assert not np.allclose(np.asarray(features[0][2]), np.asarray(features[1][2]))


@pytest.mark.long
def test_the_shipped_hybrid_config_runs_its_whole_image_text_grid_on_generated_data(tmp_path):
    """config/xm3600_hybrid.yaml as shipped, over config.yaml, overriding only the model (a
    random SigLIP read by path), the mirrors (COCO-35L and XM3600 in their published formats,
    written by benchmarks/rehearsal.py at a tiny size), the batch size, the steps, the seeds
    and this machine's threads: every strategy's batches (the shipped validation fraction of
    the 40 generated images holds a batch of 3), LiT run (GradCache over the locked image
    side) and evaluation finish. The rehearsal runs the same at the real size."""
    from hybridbatch.config import image_text_runs
    from hybridbatch.names import artifact

    rehearsal = rehearsal_module()
    coco_languages, xm3600_languages = rehearsal.config_languages()
    rng = np.random.default_rng(0)
    splits = {"train": 30, "restval": 10, "val": 2, "test": 2}
    rehearsal.write_coco35l(tmp_path / "mirrors/coco35l", coco_languages, rng, splits, 5 * 44 + 3)
    rehearsal.write_xm3600(tmp_path / "mirrors/xm3600", xm3600_languages, rng, images=6, captions=6 * 36 * 2 + 5)
    rehearsal.write_model(tmp_path / "msiglip")
    settings = rehearsal.overlay(tmp_path, steps=2, seeds=[0])
    settings["image_text"]["batching"]["batch_size"] = 3  # 3 of the 40 images are held out: one batch
    settings["resources"] = {"default": {"threads": 1}}  # this machine's, not a GPU node's 8: two jobs at once
    config = run_shipped_image_text_config(tmp_path, "config/xm3600_hybrid.yaml", settings, xm3600_languages)
    runs = image_text_runs(config)
    assert len(runs) == 1 + len(config["image_text"]["strategies"])  # the untrained model and every strategy
    strategies = config["image_text"]["strategies"]
    for run in runs[1:]:
        log = pd.read_csv(tmp_path / artifact("image_text_model", corpus="coco35l", run=run.name) / "training_log.csv")
        assert len(log) == 2 * strategies[run.strategy].get("step_factor", 1), run


def run_shipped_config(workdir: Path, configfile: str, overlay: dict) -> None:
    """Snakemake on workdir/config.yaml, the shipped `configfile` and `overlay` over them, to the tables."""
    (workdir / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    configfiles = [str(workdir / "config.yaml"), str(REPO / configfile), str(workdir / "overlay.yaml")]
    result = subprocess.run(
        SNAKEMAKE + ["--directory", str(workdir), "--configfile", *configfiles], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.long
def test_the_shipped_curve_config_trains_each_strategy_at_each_budget_and_to_its_plateau(tmp_path):
    """config/emoji_curve.yaml as shipped, over the tests' config, overriding only the
    mirror (48 generated emoji named in three languages, one never trained on), the sizes
    and the steps (budgets of 2 and 4 batches, a plateau run of at most 40): every strategy
    of the curve is trained at each budget (each run exactly its budget's batches) and
    until its development Recall@1 stops improving (it stops `patience` checks after its
    best, saving its last step), evaluated on every test image under both protocols, and the tables
    stage writes the curve's tables, tests and plot."""
    from hybridbatch.names import artifact
    from hybridbatch.report.outputs import curve_tables

    config = tiny_config()
    config["corpora"]["emoji"] = {
        **many_emoji_mirror(tmp_path / "mirror", 48, ["en", "ru", "de"]),
        "test_fraction": 0.25,
    }
    config["image_text"]["evaluation"]["languages"] = ["en", "ru", "de"]  # de held out
    config["image_text"]["strategies"] = yaml.safe_load((REPO / "config.yaml").read_text())["image_text"]["strategies"]
    write_config(tmp_path, config)
    overlay = {
        "image_text": {
            "curve": {"budgets": [2, 4], "plateau": {"steps": 40, "validation_every": 2, "patience": 2}},
        },
        "resources": {"default": {"threads": 1}},
    }
    run_shipped_config(tmp_path, "config/emoji_curve.yaml", overlay)
    shipped = yaml.safe_load((REPO / "config/emoji_curve.yaml").read_text())["image_text"]
    strategies = shipped["curve"]["strategies"]
    for strategy, point in product(strategies, ["2", "4", "plateau"]):
        model = tmp_path / artifact("image_text_model", corpus="emoji", run=f"{strategy}@{point}.s0")
        log, trained = pd.read_csv(model / "training_log.csv"), json.loads((model / "training.json").read_text())
        if point == "plateau":
            validations = pd.read_csv(model / "validation_log.csv")
            best = validations.development_recall_at_1.idxmax()  # the first of the best
            assert trained["saved_step"] == len(log) == validations.steps_trained.iloc[-1]
            assert (
                len(log) == 40 or len(validations) - 1 - best == 2
            )  # ran out of steps, or stopped 2 checks after its best development Recall@1
        else:
            assert len(log) == int(point)
        metrics = tmp_path / artifact("image_text_metrics", corpus="emoji", run=f"{strategy}@{point}.s0")
        assert {"t2i/first", "t2i/all"} <= set(pd.read_csv(metrics / "summary.csv").setting)
    tables = {path.name for path in (tmp_path / "results/tables").iterdir()}
    assert set(curve_tables()) <= tables
    curve = pd.read_csv(tmp_path / "results/tables/image_text_curve.csv", dtype={"budget": str})
    assert len(curve) == len(strategies) * 3 and (tmp_path / "results/plots/image_text_curve.png").is_file()


@pytest.mark.long
def test_the_shipped_xquad_r_zero_shot_config_evaluates_e5_on_a_generated_mirror(tmp_path):
    """config/xquad_r_e5_zero_shot.yaml as shipped, over config.yaml, overriding only its
    mirror (a generated corpus in XQuAD-R's file format, its 11 languages, pinned by the
    generated files' hashes) and this machine's threads: e5 is evaluated zero-shot in the
    mono, cross and multi settings of every language."""
    from xquad_like import write_xquad_like

    from hybridbatch.fetch.download import sha256_file

    languages = yaml.safe_load((REPO / "config/xquad_r_e5_zero_shot.yaml").read_text())["corpora"]["xquad-r-all"][
        "languages"
    ]
    mirror = write_xquad_like(tmp_path / "mirror", languages, articles=3, paragraphs=2)
    overlay = {
        "corpora": {
            "xquad-r-all": {
                "mirror": str(mirror),
                "sha256": {lang: sha256_file(mirror / f"{lang}.json") for lang in languages},
            }
        },
        "resources": {"default": {"threads": 1}},
    }
    (tmp_path / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text())
    target = "results/metrics/multilingual-e5-small/zero-shot/xquad-r-all/summary.csv"
    configfiles = [str(REPO / "config/xquad_r_e5_zero_shot.yaml"), str(tmp_path / "overlay.yaml")]
    result = subprocess.run(
        SNAKEMAKE + ["--directory", str(tmp_path), "--configfile", *configfiles, "--", target],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = pd.read_csv(tmp_path / target)
    assert set(summary.setting) == {"mono", "cross", "multi"} and summary.value.notna().all()
    by_language = pd.read_parquet(tmp_path / Path(target).parent / "by_language.parquet")
    assert set(by_language[by_language.setting == "mono"].query_lang) == set(languages)


@pytest.mark.long
def test_the_shipped_xquad_r_offline_config_trains_and_evaluates_every_strategy(tmp_path):
    """config/xquad_r_offline.yaml as shipped, over config.yaml, overriding only its mirror
    (a generated corpus in XQuAD-R's file format, its 11 languages, pinned by the generated
    files' hashes), the batch size and this machine's threads: e5 is fine-tuned with every
    strategy and every run, with the untrained model, is evaluated and tabled."""
    from xquad_like import write_xquad_like

    from hybridbatch.fetch.download import sha256_file

    shipped = yaml.safe_load((REPO / "config/xquad_r_offline.yaml").read_text())
    languages = shipped["corpora"]["xquad-r"]["languages"]
    mirror = write_xquad_like(tmp_path / "mirror", languages, articles=40, paragraphs=1)
    overlay = {
        "corpora": {
            "xquad-r": {
                "mirror": str(mirror),
                "sha256": {lang: sha256_file(mirror / f"{lang}.json") for lang in languages},
            }
        },
        "batching": {"batch_size": 4},
        "resources": {"default": {"threads": 1}},
    }
    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text())
    run_shipped_config(tmp_path, "config/xquad_r_offline.yaml", overlay)
    summary = pd.read_csv(tmp_path / "results/tables/summary.csv")
    rows = summary[summary.corpus == "xquad-r"]
    assert set(rows.strategy) == {"zero-shot", *shipped["experiment"]["strategies"]}
    assert {"mono", "cross", "multi"} <= set(rows.setting) and rows.value.notna().all()


def labse_like(tiny_model_dir: Path, out: Path) -> Path:
    """A LaBSE-packaged sentence-transformers directory (CLS pooling, Dense, Normalize) around a tiny encoder."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer

    torch.manual_seed(0)
    modules = [Transformer(str(tiny_model_dir), max_seq_length=24), Pooling(32, pooling_mode="cls"),
               Dense(32, 16, activation_function=torch.nn.Tanh()), Normalize()]  # fmt: skip
    SentenceTransformer(modules=modules, device="cpu").save(str(out))
    return out


@pytest.mark.long
def test_the_paper_config_runs_its_whole_grid_on_generated_mirrors(tmp_path, tiny_model_dir):
    """config/paper.yaml as shipped, overriding only its models (a tiny encoder for XLM-R and
    a LaBSE-packaged one, read by path), its mirrors (XQuAD-R and MLQA-R in LAReQA's files,
    MIRACL's and mMARCO's repositories at their real paths, every language of the config,
    pinned by the generated files' hashes), the sizes (queries, batch, shards) and this
    machine's device and threads: both models trained with every strategy, every variant
    evaluated on the three corpora, and the tables written."""
    from text_mirrors import write_miracl_like, write_mmarco_like
    from xquad_like import write_xquad_like

    from hybridbatch.fetch.download import sha256_file

    paper = yaml.safe_load((REPO / "config/paper.yaml").read_text())
    languages = {name: corpus["languages"] for name, corpus in paper["corpora"].items()}
    mirrors = tmp_path / "mirrors"
    xquad = write_xquad_like(mirrors / "xquad-r", languages["xquad-r-all"], articles=2, paragraphs=2)
    mlqa = write_xquad_like(mirrors / "mlqa-r", languages["mlqa-r"], articles=2, paragraphs=2, seed=1)
    overlay = {
        "corpora": {
            "xquad-r-all": {
                "mirror": str(xquad),
                "sha256": {lang: sha256_file(xquad / f"{lang}.json") for lang in languages["xquad-r-all"]},
            },
            "mlqa-r": {"mirror": str(mlqa)},
            "miracl-dev": {"mirror": str(write_miracl_like(mirrors / "miracl", languages["miracl-dev"]))},
            "mmarco": {
                "mirror": str(write_mmarco_like(mirrors / "mmarco", languages["mmarco"], queries=48, passages=64)),
                "max_queries": 40,
            },
        },
        "models": {
            "xlm-roberta-base": {"source": {"path": str(tiny_model_dir)}, "max_length": 24},
            "labse": {"source": {"path": str(labse_like(tiny_model_dir, tmp_path / "labse"))}, "max_length": 24},
        },
        "batching": {"batch_size": 8, "development_fraction": 0.2},
        "embedding": {"batch_size": 64, "shards": {"miracl-dev": 1}},
        "trainer": {"device": "cpu", "checkpoint_every": 0, "validation_every": 4},
        "resources": {"default": {"threads": 1}},
    }
    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text())
    run_shipped_config(tmp_path, "config/paper.yaml", overlay)
    summary = pd.read_csv(tmp_path / "results/tables/summary.csv")
    experiment = paper["experiment"]
    for model in experiment["models"]:
        for corpus in experiment["eval_corpora"]:
            rows = summary[(summary.model == model) & (summary.corpus == corpus)]
            assert set(experiment["strategies"]) < set(rows.strategy), (model, corpus)  # and zero-shot
            assert set(rows.seed.dropna()) == set(experiment["seeds"]) and rows.value.notna().all()
            assert "mono" in set(rows.setting) and "map" in set(rows.metric)


def test_caption_states_follow_the_trained_and_the_evaluated_corpus(tmp_path):
    """LiT of e5's top layer on COCO-35L evaluated on XM3600: the train states are
    COCO-35L's, the test states XM3600's (the corpus evaluated, not the one trained on)."""
    overlay = {"image_text": {"text_model": "multilingual-e5-small", "max_length": 32,
                              "training": {"trainable_text_layers": 1, "objective": "symmetric-info-nce",
                                           "temperature": 0.05}}}  # fmt: skip
    (tmp_path / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text())
    result = subprocess.run(
        SNAKEMAKE + ["--directory", str(tmp_path), "-n", "--configfile", str(REPO / "config/xm3600_hybrid.yaml"),
                     str(tmp_path / "overlay.yaml")],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    states = set(re.findall(r"output: (results/image_text/caption_states/\S+)", result.stdout))
    assert states == {
        "results/image_text/caption_states/coco35l/train",
        "results/image_text/caption_states/xm3600/test",
    }


@pytest.mark.long
def test_a_tiny_clip_runs_zero_shot_and_lit_with_every_strategy_through_the_workflow(tmp_path):
    """A tiny random CLIP (a local checkpoint) as the image-text model: its base model, its
    own tower's features, LiT with config.yaml's four strategies and the untrained model,
    all evaluated; the trained model loads with transformers alone."""
    from dual_encoders import tiny_clip
    from transformers import AutoModel

    config = tiny_config()
    config["models"]["tiny-clip"] = {"source": {"kind": "dual-encoder", "path": str(tiny_clip(tmp_path / "clip"))}}
    config["image_towers"]["tiny-clip-vision"] = {
        "source": {"kind": "dual-encoder", "model": "tiny-clip"},
        "batch_size": 4,
    }
    image_text = config["image_text"]
    image_text.update(text_model="tiny-clip", image_tower="tiny-clip-vision", max_length=None, zero_shot=["tiny-clip"])
    image_text["strategies"] = yaml.safe_load((REPO / "config.yaml").read_text())["image_text"]["strategies"]
    image_text["training"].update(objective=None, temperature=None)
    image_text["batching"]["steps"] = 2
    workdir = tmp_path / "work"
    workdir.mkdir()
    write_config(workdir, config)
    runs = ["zero-shot.tiny-clip"] + [f"{strategy}.s0" for strategy in image_text["strategies"]]
    snakemake(workdir, *[f"results/image_text/metrics/emoji/{run}/summary.csv" for run in runs])
    for run in runs:
        summary = pd.read_csv(workdir / f"results/image_text/metrics/emoji/{run}/summary.csv")
        assert {"t2i/first", "i2t/first", "i2t-multi/first", "t2t-cross/first"} <= set(summary.setting), run
        assert summary.model.unique().tolist() == ["tiny-clip+tiny-clip-vision"]
    assert pd.read_csv(
        workdir / "results/image_text/metrics/emoji/zero-shot.tiny-clip/summary.csv"
    ).strategy.unique() == ["zero-shot"]
    model = AutoModel.from_pretrained(str(workdir / "results/image_text/models/emoji/hybrid.s0"))
    assert type(model).__name__ == "CLIPModel"
