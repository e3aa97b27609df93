"""LAReQA-format corpora (XQuAD-R, MLQA-R): SQuAD JSON with `sentences` and
`sentence_breaks` per paragraph.

Every sentence is a candidate; a question's gold candidate is the sentence whose span
contains `answer_start`; parallel questions share `qas.id` across languages, which
becomes the query's `item_id`. A candidate's `item_id` is its article, paragraph and
sentence position (`<article>-<paragraph>-<sentence>`), which is language-independent
but not a translation link: sentence segmentation differs across languages.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from hybridbatch.artifacts import schema
from hybridbatch.corpora.formats import SOURCES, CorpusSource
from hybridbatch.fetch.download import fetch_files, git_fetcher, url_fetcher


def load_language(path: str | Path, lang: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """queries, passages and (qid, item_id, pid) gold links of one language file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))["data"]
    except (json.JSONDecodeError, KeyError, UnicodeDecodeError) as error:
        raise schema.SchemaError(f"{path}: not a LAReQA/SQuAD JSON file ({error!r})") from error
    queries, passages, gold = [], [], []
    for a, article in enumerate(data):
        for p, paragraph in enumerate(article["paragraphs"]):
            breaks = paragraph["sentence_breaks"]
            if len(breaks) != len(paragraph["sentences"]):
                raise schema.SchemaError(
                    f"{path}: article {a} paragraph {p} has {len(breaks)} breaks "
                    f"for {len(paragraph['sentences'])} sentences"
                )
            pids = [f"{lang}:{a}-{p}-{s}" for s in range(len(breaks))]
            passages += [
                (pid, lang, f"{a}-{p}-{s}", text) for s, (pid, text) in enumerate(zip(pids, paragraph["sentences"]))
            ]
            for qa in paragraph["qas"]:
                start = qa["answers"][0]["answer_start"]
                hits = [s for s, (lo, hi) in enumerate(breaks) if lo <= start < hi]
                if not hits:
                    raise schema.SchemaError(f"{path}: answer_start {start} of question {qa['id']} lies in no sentence")
                qid = f"{lang}:{qa['id']}"
                queries.append((qid, lang, qa["id"], qa["question"], a))
                gold.append((qid, qa["id"], pids[hits[0]]))
    return (
        pd.DataFrame(queries, columns=schema.QUERIES.names + ["article"]),
        pd.DataFrame(passages, columns=schema.PASSAGES.names),
        pd.DataFrame(gold, columns=["qid", "item_id", "pid"]),
    )


def load(raw_dir: str | Path, languages: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """queries (with an `article` column for splitting), passages and qrels of all languages.

    A query is relevant to the gold candidate of its `qas.id` in every language."""
    raw_dir = Path(raw_dir)
    parts = []
    for lang in languages:
        path = raw_dir / f"{lang}.json"
        if not path.is_file():
            raise schema.SchemaError(f"{path}: missing (language {lang!r} is configured)")
        parts.append(load_language(path, lang))
    queries, passages, gold = (pd.concat(frames, ignore_index=True) for frames in zip(*parts))
    qrels = queries[["qid", "item_id"]].merge(gold[["item_id", "pid"]], on="item_id")[["qid", "pid"]]
    return queries, passages, qrels.assign(relevance=1)


def download(params: dict, out_dir: Path, key: str) -> Path:
    """`<lang>.json` per language: from `url` (every file pinned by sha256) or from `git`
    (the commit pins them; sha256 pins are checked where given)."""
    hashes = params.get("sha256", {})
    if "git" in params:
        files, fetcher = {f"{lang}.json": hashes.get(lang) for lang in params["languages"]}, git_fetcher(params["git"])
    else:
        unhashed = [lang for lang in params["languages"] if lang not in hashes]
        if unhashed:
            raise ValueError(f"config key {key}.sha256: no hash for languages {unhashed}")
        files = {f"{lang}.json": hashes[lang] for lang in params["languages"]}
        fetcher = url_fetcher({name: params["url"].rstrip("/") + "/" + name for name in files})
    return fetch_files(files, fetcher, params.get("mirror"), out_dir, f"{key}.mirror")


def frames(params: dict, raw_dir: Path):
    """Split by article: a question and every candidate sentence of its article go together."""
    queries, passages, qrels = load(raw_dir, params["languages"])
    article = passages.item_id.str.split("-").str[0].astype(int)
    return queries.rename(columns={"article": "group"}), passages.assign(group=article), qrels


SOURCES.register("lareqa")(CorpusSource(download=download, frames=frames))
