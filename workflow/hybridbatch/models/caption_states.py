"""The frozen part of a LiT text tower, run once per corpus split: every caption's token
states entering the first trainable layer. LiT training and the image-text evaluation
run only the trainable layers from them (ImageTextModel.use_states); the embeddings
equal the whole tower's to float rounding (tests: 1e-5), since the frozen layers run
without dropout either way (ImageTextModel keeps them in eval mode).

An artifact holds `states.safetensors` (`states`: tokens x hidden, float32, caption
after caption; `offsets`: caption i is rows offsets[i]:offsets[i+1]), `layers.json` (the
number of layers run) and `captions.parquet` (caption i's text, without the prefix).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NotRequired, TypedDict

import numpy as np
import pyarrow as pa
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from hybridbatch.artifacts import schema
from hybridbatch.evaluate.subset import evaluated_captions
from hybridbatch.models.encoders import Encoder

STATES, TEXTS = "states.safetensors", "captions.parquet"
BATCH_SIZE = 256  # captions run at a time (a fixed number: an evaluation's batch size retrains nothing)
TEXT_SCHEMA = pa.schema([("text", pa.string())])
LAYERS_KEY = "image_text.training.trainable_text_layers"


class CaptionStates:
    """A caption-states artifact, read whole: the packed frozen states of any captions it holds."""

    def __init__(self, directory: str | Path):
        self.path = Path(directory)
        tensors = load_file(str(self.path / STATES))
        self.states, self.offsets = tensors["states"], tensors["offsets"]
        self.layers = int(json.loads((self.path / "layers.json").read_text())["layers"])
        texts = schema.read_parquet(self.path / TEXTS, TEXT_SCHEMA).text
        self.row = {text: row for row, text in enumerate(texts)}

    def rows(self, texts: list[str]) -> torch.Tensor:
        missing = [text for text in texts if text not in self.row]
        if missing:
            raise KeyError(f"{self.path / TEXTS}: no states for captions {missing[:3]}")
        return torch.tensor([self.row[text] for text in texts], dtype=torch.int64)

    def token_counts(self, texts: list[str]) -> np.ndarray:
        rows = self.rows(texts)
        return (self.offsets[rows + 1] - self.offsets[rows]).numpy()

    def lookup(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """The packed states of `texts` (text after text) and each one's token count."""
        rows = self.rows(texts)
        starts, lengths = self.offsets[rows], self.offsets[rows + 1] - self.offsets[rows]
        tokens = torch.repeat_interleave(starts - (lengths.cumsum(0) - lengths), lengths) + torch.arange(
            int(lengths.sum())
        )
        return self.states[tokens], lengths


def frozen_layers(encoder: Encoder, trainable: int | str) -> int:
    """How many of the tower's layers stay as they are when the top `trainable` train."""
    total = len(encoder.transformer.encoder.layer)
    if trainable == "all" or not isinstance(trainable, int) or not 0 < trainable <= total:
        raise ValueError(f"config key {LAYERS_KEY}: {trainable!r}: caption states need 1 to {total} layers")
    return total - trainable


@torch.inference_mode()
def compute_states(encoder: Encoder, texts: list[str], layers: int, batch_size: int):
    """(states, offsets) of `texts` through the embedding layer and the first `layers`
    layers, in eval mode, computed in batches of similar length."""
    encoder.model.eval()
    counts = encoder.token_counts(texts, "query")
    offsets = torch.from_numpy(np.concatenate([[0], np.cumsum(counts)]))
    states = torch.empty(int(offsets[-1]), encoder.transformer.config.hidden_size)
    order = np.argsort(counts, kind="stable")
    for start in tqdm(range(0, len(texts), batch_size), desc="caption states", unit="batch", mininterval=5):
        index = order[start : start + batch_size]
        hidden, lengths = encoder.frozen_states([texts[i] for i in index], "query", layers)
        if not torch.equal(lengths.cpu(), torch.from_numpy(counts[index])):
            raise RuntimeError("caption states: token counts differ between tokenizer calls")
        ends = lengths.cumsum(0)
        for i, end, length in zip(index, ends.tolist(), lengths.tolist()):
            states[offsets[i] : offsets[i + 1]] = hidden[end - length : end].float().cpu()
    return states, offsets


class CaptionStatesParams(TypedDict):
    """The text model's entry (with the caption length), the trainable layers, and the
    captions: the train split's in `languages` (`captions`: first or all), or the
    evaluated test captions (`images`, `subset_seed`, `protocols` as the evaluation's)."""

    text_model: dict
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
        captions = schema.read_parquet(corpus_dir / "queries.parquet", schema.CAPTIONS)
        captions = captions[captions.lang.isin(params["languages"])]
        if params["captions"] == "first":
            captions = captions[captions.caption == 0]
    return sorted(set(captions.text))


def caption_states(params: CaptionStatesParams, base: str | Path, corpus: str | Path, out: str | Path) -> dict:
    """Write the states of a split's captions through the frozen layers of the text model in `base`."""
    encoder = Encoder(base, params["text_model"], device="cpu")
    if not encoder.packed:
        raise ValueError(
            f"{base}: caption states need a BERT-family encoder with mean or CLS pooling; "
            f"set config key {LAYERS_KEY} to 'all' to train without them"
        )
    layers = frozen_layers(encoder, params["trainable_text_layers"])
    texts = selected_captions(params, Path(corpus))
    states, offsets = compute_states(encoder, texts, layers, BATCH_SIZE)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({"states": states, "offsets": offsets}, str(out_dir / STATES))
    (out_dir / "layers.json").write_text(json.dumps({"layers": layers}))
    schema.write_table(pa.table({"text": texts}, schema=TEXT_SCHEMA), out_dir / TEXTS)
    return {"captions": len(texts), "tokens": int(offsets[-1]), "layers": layers}
