import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest
from text_mirrors import write_miracl_like

from hybridbatch import corpora
from hybridbatch.corpora import prepare
from hybridbatch.pairs import build as pairs

REPO = Path(__file__).resolve().parent.parent
LANGUAGES = ["en", "de", "ru", "zh"]
CORPUS = {"source": "cldr", "languages": LANGUAGES, "test_fraction": 0.3, "split_seed": 1}
TINY_MODEL = {
    "source": {
        "kind": "random",
        "corpus": "c",
        "vocab_size": 400,
        "hidden_size": 32,
        "layers": 1,
        "heads": 2,
        "seed": 0,
    },
    "pooling": "mean",
    "query_prefix": "query: ",
    "passage_prefix": "passage: ",
    "max_length": 24,
}


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory) -> Path:
    """A small real CLDR corpus (4 languages) in canonical Parquet."""
    root = tmp_path_factory.mktemp("corpus")
    corpora.download(CORPUS, root / "raw")
    prepare.prepare(CORPUS, root / "raw", root)
    return root


@pytest.fixture(scope="session")
def pairs_dir(corpus_dir, tmp_path_factory) -> Path:
    """pairs.parquet and qrels.parquet of the corpus's train split."""
    path = tmp_path_factory.mktemp("pairs")
    pairs.build_pairs({"languages": LANGUAGES, "hard_negatives": True, "seed": 0}, corpus_dir / "train", path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(corpus_dir, tmp_path_factory) -> Path:
    from hybridbatch.models.base_model import build_base_model

    out = tmp_path_factory.mktemp("model")
    build_base_model(TINY_MODEL, corpus_dir / "train", out)
    return out


@pytest.fixture
def miracl_mirror(tmp_path):
    """The two MIRACL repositories' files for de and sw, at their real relative paths."""
    return write_miracl_like(tmp_path / "mirror", ["de", "sw"])
