"""Helpers the tests of several modules share: SHARED, corpus_params, paragraph, write_fixture."""

import json

from conftest import REPO

from hybridbatch.fetch.download import sha256_file

SHARED = REPO.parent / "shared" / "corpora" / "xquad-r"


def paragraph(sentences, qas):
    breaks, start = [], 0
    for sentence in sentences:
        breaks.append([start, start + len(sentence)])
        start += len(sentence) + 1
    return {"context": " ".join(sentences), "sentences": sentences, "sentence_breaks": breaks, "qas": qas}


def write_fixture(root, lang, sentences, answers):
    qas = [
        {"id": qid, "question": f"{lang} question {qid}", "answers": [{"answer_start": start, "text": "x"}]}
        for qid, start in answers.items()
    ]
    data = {
        "version": "1",
        "data": [
            {"title": "t", "paragraphs": [paragraph(sentences, qas)]},
            {"title": "u", "paragraphs": [paragraph([f"{lang} other one.", f"{lang} other two."], [])]},
        ],
    }
    (root / f"{lang}.json").write_text(json.dumps(data, ensure_ascii=False))


def corpus_params(mirror, languages):
    return {
        "name": "fixture",
        "source": "lareqa",
        "url": "http://127.0.0.1:9/none",
        "mirror": str(mirror),
        "languages": languages,
        "test_fraction": 0.5,
        "split_seed": 0,
        "sha256": {lang: sha256_file(mirror / f"{lang}.json") for lang in languages},
    }
