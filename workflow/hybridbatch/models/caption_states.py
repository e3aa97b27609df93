"""The frozen part of a LiT text tower, run once per corpus split (the stage:
models/frozen_layers.py): every caption's token
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

import numpy as np
import pyarrow as pa
import torch

from hybridbatch.artifacts import schema

STATES, TEXTS, LAYERS = "states.safetensors", "captions.parquet", "layers.json"
TEXT_SCHEMA = pa.schema([("text", pa.string())])
LAYERS_KEY = "image_text.training.trainable_text_layers"
STATES_KEY = "image_text.training.caption_states"
CAPTION = "query"  # captions, as queries or as targets, take the model's query prefix
DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}  # safetensors' names of the dtypes states use


def memory_mapped(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, mapped copy-on-write from its data (the format: an
    8-byte little-endian header size, the JSON header, then each tensor's bytes at its offsets)."""
    with open(path, "rb") as file:
        size = int.from_bytes(file.read(8), "little")
        header = json.loads(file.read(size))
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        shape, dtype = tuple(entry["shape"]), DTYPES[entry["dtype"]]
        if begin == end:
            tensors[name] = torch.from_numpy(np.zeros(shape, dtype))
            continue
        tensors[name] = torch.from_numpy(np.memmap(path, dtype, mode="c", offset=8 + size + begin, shape=shape))
    return tensors


class CaptionStates:
    """A caption-states artifact, memory-mapped: a job reads the pages of the captions it
    looks up, not the whole file (303 MB for the default run's training captions)."""

    def __init__(self, directory: str | Path):
        self.path = Path(directory)
        tensors = memory_mapped(self.path / STATES)
        self.states, self.offsets = tensors["states"], tensors["offsets"]
        self.layers = int(json.loads((self.path / LAYERS).read_text())["layers"])
        texts = schema.read_parquet(self.path / TEXTS, TEXT_SCHEMA).text
        self.row = {text: row for row, text in enumerate(texts)}

    def rows(self, texts: list[str]) -> torch.Tensor:
        missing = [text for text in texts if text not in self.row]
        if missing:
            raise KeyError(f"{self.path / TEXTS}: no states for captions {missing[:3]}")
        return torch.tensor([self.row[text] for text in texts], dtype=torch.int64)

    def check_covers(self, texts: set[str], where: Path) -> None:
        """Refuse, before any step, captions (those of the batches in `where`) without a state."""
        missing = sorted(texts - self.row.keys())
        if missing:
            raise KeyError(
                f"{self.path}: no states for {len(missing)} of the {len(texts)} captions in {where}, e.g. "
                f"{missing[:3]} (the caption-states stage chose other captions than the batches)"
            )

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
