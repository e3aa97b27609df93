"""The caption states stage: a LiT text tower's frozen layers run once over a corpus
split's captions (the format and its reader: models/caption_states.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NotRequired, TypedDict

import numpy as np
import pyarrow as pa
import torch
from safetensors.torch import save_file
from tqdm import tqdm

from hybridbatch.artifacts import schema
from hybridbatch.models.caption_states import CAPTION, LAYERS, LAYERS_KEY, STATES, STATES_KEY, TEXT_SCHEMA, TEXTS
from hybridbatch.models.dual_encoder import check_layers
from hybridbatch.models.encoders import Encoder, ModelEntry
from hybridbatch.models.packed_encoder import PackedEncoder, load_encoder
from hybridbatch.subset import evaluated_captions, training_captions

BATCH_SIZE = 256  # captions run at a time (a fixed number: an evaluation's batch size retrains nothing)


def frozen_layer_count(encoder: Encoder | PackedEncoder, trainable: int | str) -> int:
    """How many of the tower's layers stay as they are when the top `trainable` train."""
    total = len(encoder.transformer.encoder.layer)
    check_layers(trainable, total, LAYERS_KEY)
    if trainable == "all":
        raise ValueError(f"config key {LAYERS_KEY}: 'all' trains every layer, so no layer's states can be cached")
    return total - trainable


@torch.inference_mode()
def compute_states(encoder: Encoder | PackedEncoder, texts: list[str], layers: int, batch_size: int):
    """(states, offsets) of `texts` through the embedding layer and the first `layers`
    layers, in eval mode, computed in batches of similar length."""
    encoder.model.eval()
    counts = encoder.token_counts(texts, CAPTION)
    offsets = torch.from_numpy(np.concatenate([[0], np.cumsum(counts)]))
    states = torch.empty(int(offsets[-1]), encoder.transformer.config.hidden_size)
    order = np.argsort(counts, kind="stable")
    for start in tqdm(range(0, len(texts), batch_size), desc="caption states", unit="batch", mininterval=5):
        index = order[start : start + batch_size]
        hidden, lengths = encoder.frozen_states([texts[i] for i in index], CAPTION, layers)
        if not torch.equal(lengths.cpu(), torch.from_numpy(counts[index])):
            raise RuntimeError(f"{encoder.base_dir}: its tokenizer counted these captions' tokens differently twice")
        starts = offsets[index]  # each caption's rows, in the batch's order (as `hidden` packs them)
        rows = torch.repeat_interleave(starts - (lengths.cumsum(0) - lengths).cpu(), lengths.cpu())
        states[rows + torch.arange(len(rows))] = hidden.float().cpu()
    return states, offsets


class CaptionStatesParams(TypedDict):
    """The text model's entry (with the caption length), the trainable layers, and the
    captions: the train split's in `languages` (`captions`: first or all), or the
    evaluated test captions (`images`, `subset_seed`, `protocols` as the evaluation's)."""

    text_model: ModelEntry
    trainable_text_layers: int
    split: str
    languages: list[str]
    captions: NotRequired[str]
    images: NotRequired[int | None]
    subset_seed: NotRequired[int]
    protocols: NotRequired[list[str]]


def selected_captions(params: CaptionStatesParams, corpus_dir: Path) -> list[str]:
    """The unique caption texts the states are computed for."""
    if params["split"] == "test":
        captions, _ = evaluated_captions(
            corpus_dir, params["languages"], params["images"], params["subset_seed"], params["protocols"]
        )
    else:
        captions = training_captions(
            schema.read_parquet(corpus_dir / "queries.parquet", schema.CAPTIONS),
            params["languages"],
            params["captions"],
        )
    return sorted(set(captions.text))


def caption_states(params: CaptionStatesParams, base: str | Path, corpus: str | Path, out: str | Path) -> dict:
    """Write the states of a split's captions through the frozen layers of the text model in `base`."""
    encoder = load_encoder(base, params["text_model"], device="cpu")
    if isinstance(encoder, Encoder) and not encoder.packed:
        raise ValueError(
            f"{base}: caption states need a BERT-family encoder with mean or CLS pooling; "
            f"set config key {STATES_KEY} to false to run the whole tower every step"
        )
    layers = frozen_layer_count(encoder, params["trainable_text_layers"])
    texts = selected_captions(params, Path(corpus))
    states, offsets = compute_states(encoder, texts, layers, BATCH_SIZE)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({"states": states, "offsets": offsets}, str(out_dir / STATES))
    (out_dir / LAYERS).write_text(json.dumps({"layers": layers}))
    schema.write_table(pa.table({"text": texts}, schema=TEXT_SCHEMA), out_dir / TEXTS)
    return {"captions": len(texts), "tokens": int(offsets[-1]), "layers": layers}
