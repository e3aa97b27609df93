"""Offline multilingual corpus from the Unicode CLDR data shipped in the Babel wheel.

An item is one locale (a language spoken in a territory, e.g. ``de_CH``). In every
display language L the item has
  * a query: the locale's display name in L, e.g. "German (Switzerland)";
  * a passage: a differently worded description in L, e.g.
    "Switzerland: Swiss Franc; spoken there: German".
Languages and territories recur across items, so a model can learn their
translations from training items and must compose them on unseen test items.
"""

from __future__ import annotations

import json
from pathlib import Path

import babel
import pandas as pd
from babel import Locale, localedata
from babel.numbers import get_territory_currencies

from hybridbatch.artifacts import schema
from hybridbatch.corpora.formats import SOURCES, CorpusSource, grouped_by_item
from hybridbatch.fetch.download import write_checksummed

SOURCE_NAME = "babel-cldr"


def _locale_items() -> list[tuple[str, str]]:
    """(language, territory) pairs of every two-part CLDR locale such as ``de_CH``."""
    items = []
    for identifier in sorted(localedata.locale_identifiers()):
        parts = identifier.split("_")
        if len(parts) == 2 and len(parts[1]) == 2 and parts[1].isalpha():
            items.append((parts[0], parts[1]))
    return items


def _currency(territory: str) -> str | None:
    currencies = get_territory_currencies(territory)
    return currencies[0] if currencies else None


def extract_records(languages: list[str]) -> list[dict]:
    """One record per item with its localised names in every display language.

    Items whose language, territory or currency lacks a CLDR name in any display
    language are left out: a fallback to a code would leak the same string into
    every language.
    """
    displays = {lang: Locale.parse(lang) for lang in languages}
    records = []
    for language, territory in _locale_items():
        currency = _currency(territory)
        names = {}
        for lang, display in displays.items():
            language_name = display.languages.get(language)
            territory_name = display.territories.get(territory)
            currency_name = display.currencies.get(currency) if currency else None
            if not (language_name and territory_name and currency_name):
                break
            names[lang] = {"language": language_name, "territory": territory_name, "currency": currency_name}
        if len(names) == len(displays):
            records.append({"item_id": f"{language}_{territory}", "names": names})
    return records


def download(params: dict, out_dir: str | Path, key: str = "corpora.<name>") -> Path:
    """Write the raw CLDR records as JSON Lines plus a SHA256SUMS file."""
    languages = params["languages"]
    lines = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in extract_records(languages))
    provenance = json.dumps({"source": SOURCE_NAME, "babel_version": babel.__version__, "languages": languages})
    return write_checksummed(Path(out_dir), {"records.jsonl": lines.encode(), "source.json": provenance.encode()})


def query_text(names: dict[str, str]) -> str:
    return f"{names['language']} ({names['territory']})"


def passage_text(names: dict[str, str]) -> str:
    return f"{names['territory']}: {names['currency']}; {names['language']}"


def frames(params: dict, raw_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """One query and one passage per item and language; an item is relevant in every language."""
    languages = params["languages"]
    path = raw_dir / "records.jsonl"
    queries, passages = [], []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise schema.SchemaError(f"{path}:{number}: not JSON ({error})") from error
            for lang in languages:
                names = record["names"].get(lang)
                if names is None:
                    raise schema.SchemaError(f"{path}:{number}: item {record['item_id']} has no language {lang!r}")
                item = record["item_id"]
                queries.append((f"q:{lang}:{item}", lang, item, query_text(names)))
                passages.append((f"p:{lang}:{item}", lang, item, passage_text(names)))
    queries = pd.DataFrame(queries, columns=schema.QUERIES.names)
    passages = pd.DataFrame(passages, columns=schema.PASSAGES.names)
    same_lang = queries.merge(passages, on=["item_id", "lang"])
    identical = same_lang.text_x == same_lang.text_y
    if identical.any():
        raise schema.SchemaError(f"{path}: query equals its passage for {same_lang.qid[identical].tolist()[:5]}")
    return grouped_by_item(queries, passages, parallel_qrels(queries, passages))


def parallel_qrels(queries: pd.DataFrame, passages: pd.DataFrame) -> pd.DataFrame:
    """Every query is relevant to its item's passage in every language."""
    qrels = queries[["qid", "item_id"]].merge(passages[["pid", "item_id"]], on="item_id")[["qid", "pid"]]
    return qrels.assign(relevance=1).sort_values(["qid", "pid"], ignore_index=True)


SOURCES.register("cldr")(CorpusSource(download=download, frames=frames))
