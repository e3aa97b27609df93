"""A generated corpus in XQuAD-R's exact file format (SQuAD JSON with `sentences` and
`sentence_breaks`, one `<lang>.json` per language, SHA256SUMS), with its shape: the same
articles, paragraphs and question ids in every language; sentence segmentation that
differs across languages (a language may join two sentences, so candidate counts
differ); several questions sharing one gold sentence. Tests that also run on the real
files (../shared/corpora/xquad-r) run on this in any clone."""

import json
from pathlib import Path

import numpy as np

from hybridbatch.fetch.download import sha256_file, write_checksums

LANGUAGES = ["ar", "de", "en", "ru", "zh"]
SYLLABLES = {"ar": "ka la ma na sa ta", "de": "ein der sch ung ber ach", "en": "the ing and ion ter all",
             "ru": "ра ко ни ст ов то", "zh": "的 是 在 有 人 中", "el": "κα λο μη να σε τα",
             "es": "el la de que los con", "hi": "का ने में है की से", "th": "ที่ ใน การ มี ของ และ",
             "tr": "bir ve bu da için ile", "vi": "của và có là được trong"}  # fmt: skip


def write_xquad_like(
    raw: Path, languages: list[str] = LANGUAGES, articles: int = 20, paragraphs: int = 5, seed: int = 0
) -> Path:
    rng = np.random.default_rng(seed)
    raw.mkdir(parents=True, exist_ok=True)
    shape = []  # per article, per paragraph: (sentence count, questions' sentence indices)
    for _ in range(articles):
        shape.append(
            [
                (n := int(rng.integers(3, 8)), rng.integers(0, n, size=int(rng.integers(1, 5))))
                for _ in range(paragraphs)
            ]
        )
    digests = {}
    for lang in languages:
        syllables = SYLLABLES[lang].split()
        data = []
        for a, article in enumerate(shape):
            paras = []
            for p, (n, answers) in enumerate(article):
                words = [
                    " ".join(rng.choice(syllables, size=int(rng.integers(2, 6)))) + f" {a}x{p}x{s}" for s in range(n)
                ]
                joined = rng.random(n - 1) < 0.15  # this language writes sentence s and s + 1 as one
                sentences, owner = [], []
                for s in range(n):
                    if s and joined[s - 1]:
                        sentences[-1] += " " + words[s] + "."
                    else:
                        sentences.append(words[s] + ".")
                    owner.append(len(sentences) - 1)
                breaks, start = [], 0
                for sentence in sentences:
                    breaks.append([start, start + len(sentence)])
                    start += len(sentence) + 1
                qas = [
                    {
                        "id": f"{a}-{p}-q{i}",
                        "question": f"{' '.join(rng.choice(syllables, 3))} {a}x{p}x{s}?",
                        "answers": [{"answer_start": breaks[owner[s]][0] + 1, "text": "x"}],
                    }
                    for i, s in enumerate(answers)
                ]
                paras.append(
                    {"context": " ".join(sentences), "sentences": sentences, "sentence_breaks": breaks, "qas": qas}
                )
            data.append({"title": f"article {a}", "paragraphs": paras})
        path = raw / f"{lang}.json"
        path.write_text(json.dumps({"version": "1.1", "data": data}, ensure_ascii=False), encoding="utf-8")
        digests[path.name] = sha256_file(path)
    write_checksums(raw, digests)
    return raw


def xquad_r_raw(raw: Path, files: str, languages: list[str] | None = None) -> list[str]:
    """A raw directory of XQuAD-R-format files: `generated` (this module's corpus) or `real`
    (links to ../shared/corpora/xquad-r, `languages` or all of them, with their checksums;
    the test is skipped when it is absent). Returns the languages."""
    import pytest

    if files == "generated":
        write_xquad_like(raw)
        return LANGUAGES
    mirror = Path(__file__).resolve().parent.parent.parent / "shared" / "corpora" / "xquad-r"
    if not mirror.is_dir():
        pytest.skip("../shared/corpora/xquad-r is not here")
    languages = languages or sorted(path.stem for path in mirror.glob("*.json"))
    raw.mkdir(parents=True)
    for lang in languages:
        (raw / f"{lang}.json").symlink_to(mirror / f"{lang}.json")
    sums = {line.split()[1]: line for line in (mirror / "SHA256SUMS").read_text().splitlines()}
    (raw / "SHA256SUMS").write_text("".join(sums[f"{lang}.json"] + "\n" for lang in languages))
    return languages
