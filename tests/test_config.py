"""The tests of `hybridbatch/config.py`."""

import pytest
import yaml
from conftest import REPO, TINY_MODEL
from sources_helpers import shipped_config

from hybridbatch.config import ConfigError, validate_config


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
