"""What the tables stage reports and writes: each track's headline metrics (the per-query
column, the settings, the direction and the digits of each; a text headline's table is named
after its metric) and the file names of the other tables and plots. Standard library
only: the tables rule reads the same names."""

from __future__ import annotations

from dataclasses import dataclass

from hybridbatch.names import SETTINGS


@dataclass(frozen=True)
class Headline:
    """A headline metric of a track's tables: its per-query `column`, the `settings` it is
    reported in, whether larger is better, and the digits printed."""

    column: str
    settings: tuple[str, ...]
    larger_is_better: bool
    digits: int


HEADLINES = {
    "map": Headline("map", SETTINGS, True, 3),
    "language_bias": Headline("rank_distance", ("multi",), False, 1),
}
IMAGE_TEXT_HEADLINES = {
    "recall@1": Headline(
        "recall@1",
        tuple(f"{s}{g}/{p}" for p in ("first", "all") for s in ("t2i", "i2t") for g in ("", "-trained", "-held-out")),
        True,
        3,
    ),
    "map": Headline("map", ("i2t-multi/first", "i2t-multi/all"), True, 3),
    "language_bias": Headline("rank_distance", ("i2t-multi/first", "i2t-multi/all"), False, 3),  # share of the pool
}


def reported(headlines: dict[str, Headline]) -> tuple[list[str], list[str]]:
    """The per-query settings and metric columns the tables of a track read."""
    settings = sorted({setting for headline in headlines.values() for setting in headline.settings})
    return settings, sorted({headline.column for headline in headlines.values()})


def image_text_headline_stem(metric: str) -> str:
    return f"image_text_{metric.replace('@', '_at_')}"


def per_language_stem(corpus: str) -> str:
    return f"per_language_{corpus}"


def image_text_table_stems(corpus: str) -> list[str]:
    """The image-text tables of the corpus evaluated (each written as .csv, .md and .tex)."""
    headlines = [image_text_headline_stem(metric) for metric in IMAGE_TEXT_HEADLINES]
    return ["image_text", *headlines, per_language_stem(f"image_text_{corpus}")]


SETTINGS_PLOT = "map_by_setting"


def alpha_plot(corpus: str) -> str:
    return f"alpha_{corpus}"


def text_plots(corpora: list[str]) -> list[str]:
    return [SETTINGS_PLOT] + [alpha_plot(corpus) for corpus in corpora]


IMAGE_TEXT_PLOTS = "image_text_by_language"
IMAGE_TEXT_ALPHA_PLOT = "image_text_alpha"  # with trained runs
VALIDATION_PLOT = "image_text_validation"  # with development batches
IMAGE_TEXT_TRAINING = "image_text_training"  # with trained runs: what each saved model trained (md, csv)
CURVE = "image_text_curve"  # with image_text.curve: a table (and its _sd, _runs) and a plot
CURVE_TESTS = "image_text_curve_tests"


def curve_tables() -> list[str]:
    """The files (under tables/) the budget curve adds."""
    return (
        [f"{CURVE}.{ext}" for ext in ("md", "csv")]
        + [f"{CURVE}_sd.csv", f"{CURVE}_runs.csv"]
        + [f"{CURVE_TESTS}.{ext}" for ext in ("md", "csv")]
    )
