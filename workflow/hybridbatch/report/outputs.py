"""What the tables stage reports and writes: each track's headline
metrics (the per-query column, the settings, the direction, the digits, the title and the
definition of each, and the file its table is written to), the columns of the image-text
summary table, and the file names of the other tables and plots. A headline added here is
tabled, tested, plotted (where it names plotted tasks), put on the curve and audited.
Standard library only: the tables rule reads the same names."""

from __future__ import annotations

from dataclasses import dataclass

from hybridbatch.names import LANGUAGE_BIAS, MAP, RANK_DISTANCE, SETTINGS, recall

# The tracks' Recall@k share a column name, not a definition (evaluate/metrics.py: recall_rule): the
# text track's is the share of the relevant candidates in the top k (BEIR, MTEB); the image-text note says its own
IMAGE_TEXT_RECALL = "Recall@k: 1 when any relevant candidate is in the top k (CLIP_benchmark)."
TASK_TITLES = {"t2i": "T→I", "i2t": "I→T", "i2t-multi": "pooled I→T"}


@dataclass(frozen=True)
class Headline:
    """A headline metric of a track's tables: its per-query `column`, the `settings` it is
    reported in, whether larger is better, the digits printed, its `title` in plots, its table's
    file `stem`, and the image-text `tasks` it is plotted for (against alpha and on the curve),
    each with the side whose language splits it into trained and held-out (None: pooled)."""

    column: str
    settings: tuple[str, ...]
    larger_is_better: bool
    digits: int
    title: str = ""
    stem: str = ""
    tasks: tuple[tuple[str, str | None], ...] = ()


def image_text_settings(*tasks: str) -> tuple[str, ...]:
    return tuple(f"{task}/{protocol}" for protocol in ("first", "all") for task in tasks)


def recall_headline(k: int) -> Headline:
    """Image-text Recall@k: T->I and I->T, all caption languages and the trained and held-out ones."""
    tasks = [f"{side}{group}" for side in ("t2i", "i2t") for group in ("", "-trained", "-held-out")]
    return Headline(
        recall(k), image_text_settings(*tasks), True, 3, f"R@{k}", f"image_text_recall_at_{k}",
        (("t2i", "query_lang"), ("i2t", "candidate_lang")),
    )  # fmt: skip


HEADLINES = {
    MAP: Headline(MAP, SETTINGS, True, 3, "mAP", MAP),
    LANGUAGE_BIAS: Headline(RANK_DISTANCE, ("multi",), False, 1, "language bias", LANGUAGE_BIAS),
}
IMAGE_TEXT_HEADLINES = {
    recall(1): recall_headline(1),
    MAP: Headline(MAP, image_text_settings("i2t-multi"), True, 3, "mAP", "image_text_map", (("i2t-multi", None),)),
    LANGUAGE_BIAS: Headline(  # a share of the pool
        RANK_DISTANCE,
        image_text_settings("i2t-multi"),
        False,
        3,
        "language bias",
        "image_text_language_bias",
        (("i2t-multi", None),),
    ),  # fmt: skip
}
IMAGE_TEXT_TABLE = [  # the image-text summary table's columns: (task, summary metric)
    *((side, recall(k)) for side in ("t2i", "i2t") for k in (1, 5, 10)),
    ("i2t-multi", MAP),
    ("i2t-multi", LANGUAGE_BIAS),
]


def panel_title(task: str, headline: Headline) -> str:
    """A plotted headline's title for one task: 'T→I R@1', 'pooled I→T mAP'; language bias alone."""
    return headline.title if headline.column == RANK_DISTANCE else f"{TASK_TITLES[task]} {headline.title}"


def plotted() -> list[tuple[str, str, str, bool, str | None]]:
    """(task, summary metric, title, larger is better, language side) of each plotted task of
    the image-text headlines (against alpha and on the curve)."""
    return [
        (task, metric, panel_title(task, headline), headline.larger_is_better, side)
        for metric, headline in IMAGE_TEXT_HEADLINES.items()
        for task, side in headline.tasks
    ]


def reported(headlines: dict[str, Headline]) -> tuple[list[str], list[str]]:
    """The per-query settings and metric columns the tables of a track read."""
    settings = sorted({setting for headline in headlines.values() for setting in headline.settings})
    return settings, sorted({headline.column for headline in headlines.values()})


def per_language_stem(corpus: str) -> str:
    return f"per_language_{corpus}"


def text_table_stems() -> list[str]:
    """The text track's headline tables (each written as .csv, .md and .tex)."""
    return [headline.stem for headline in HEADLINES.values()]


def image_text_table_stems(corpus: str) -> list[str]:
    """The image-text tables of the corpus evaluated (each written as .csv, .md and .tex)."""
    headlines = [headline.stem for headline in IMAGE_TEXT_HEADLINES.values()]
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
