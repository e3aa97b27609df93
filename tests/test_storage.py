"""Results on S3-compatible storage: the workflow on a tiny config (text track, one strategy,
passages in two shards) against a local S3 server (moto, on 127.0.0.1), through
snakemake-storage-plugin-s3: upload, a rerun with nothing to do, and an audit of the
bucket's contents copied back."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from test_workflow import SNAKEMAKE, tiny_config

pytestmark = pytest.mark.workflow
BUCKET, PREFIX = "hybridbatch", "experiments/tiny"


@pytest.fixture
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def on_s3(workdir: Path, endpoint: str, *args: str) -> str:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(
        AWS_EC2_METADATA_DISABLED="true",
        SNAKEMAKE_STORAGE_S3_ENDPOINT_URL=endpoint,
        SNAKEMAKE_STORAGE_S3_ACCESS_KEY="testing",
        SNAKEMAKE_STORAGE_S3_SECRET_KEY="testing",
    )
    result = subprocess.run(
        SNAKEMAKE
        + [
            "--directory",
            str(workdir),
            "--configfile",
            str(workdir / "config.yaml"),
            *args,
            "--default-storage-provider",
            "s3",
            "--default-storage-prefix",
            f"s3://{BUCKET}/{PREFIX}",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.mark.long
def test_results_on_s3_upload_rerun_nothing_and_audit_clean(s3_endpoint, tmp_path):
    import boto3

    config = tiny_config()
    config["image_text"] = None
    config["experiment"]["strategies"] = ["hybrid"]
    config["embedding"]["shards"] = {"cldr-locales": 2}  # each model's test passages in two jobs
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    on_s3(workdir, s3_endpoint)

    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    keys = [
        item["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
        for item in page.get("Contents", [])
    ]
    names = {key.removeprefix(PREFIX + "/") for key in keys}
    assert {
        "results/tables/summary.csv",
        "results/tables/manifest.json",
        "results/corpora/cldr-locales/manifest.json",
        "results/train/cldr-locales/manifest.json",
        "results/workflow.json",
        "results/embedding_shards/tiny-bert/zero-shot/cldr-locales/1-of-2/manifest.json",
    } <= names

    assert "Nothing to be done" in on_s3(workdir, s3_endpoint)

    copy = tmp_path / "copy"
    for key in keys:
        target = copy / key.removeprefix(PREFIX + "/")
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(BUCKET, key, str(target))
    env = {**os.environ, "PYTHONPATH": str(REPO / "workflow")}
    audit = subprocess.run(
        [sys.executable, "-m", "hybridbatch", "audit", "results"], cwd=copy, capture_output=True, text=True, env=env
    )
    assert audit.returncode == 0, audit.stdout[-3000:] + audit.stderr[-3000:]
    # download, prepare, pairs, batches, base model, model, 2 x (2 shards, embeddings, runs, metrics), tables
    assert "17 of 17 artifacts verified, 0 failing" in audit.stdout, audit.stdout[-3000:]

    config["index"]["factory"] = "HNSW32"  # a search knob: the vectors are re-indexed, no shard re-encoded
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    plan = on_s3(workdir, s3_endpoint, "--dry-run")
    assert "rule embed:" in plan and "rule embed_shard:" not in plan, plan[-3000:]
