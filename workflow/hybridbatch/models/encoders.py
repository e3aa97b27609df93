"""The shared bi-encoder: prefixes, pooling, L2 normalisation; saving in a format that
both transformers and sentence-transformers load.

A trained encoder is stored as what training changed, nothing it shares with its base:
`trained.safetensors` holds the transformer's tensors that differ from the base model it
started from, and `base.json` names that base directory (relative to the model), its
weights' sha256 (checked on every load) and the model's token limit. Everything else (the
tokenizer, the configs, pooling) is the base's. `python -m hybridbatch export-model`
writes the full directory that `SentenceTransformer(dir)` loads. A model whose other
modules hold weights (a Dense head) is saved whole.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import NotRequired, TypedDict

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from hybridbatch.artifacts.hashing import TEMPORARY_SUFFIX, sha256_file
from hybridbatch.artifacts.manifest import MANIFEST
from hybridbatch.models.packed import (
    packable,
    packed_input_states,
    packed_layers,
    packed_pooling,
    packed_sentence_embeddings,
)

WEIGHTS = "model.safetensors"  # the transformer's weights in a full directory
TRAINED = "trained.safetensors"  # the tensors training changed
BASE = "base.json"  # the base directory those changes apply to, its weights' sha256, the token limit


class ModelEntry(TypedDict):
    """A models entry of the config (`models.<name>`): its source (by kind, a registry's
    keys) and how its texts are encoded."""

    source: dict
    pooling: NotRequired[str]
    query_prefix: NotRequired[str]
    passage_prefix: NotRequired[str]
    max_length: NotRequired[int | None]


class Encoder:
    """Encodes queries and passages with one shared sentence-transformers model: its own
    modules (transformer, pooling, and any Dense or Normalize layers) in its own order,
    with the config's prefixes, then L2-normalised. BERT-family models run packed (no
    compute on padding; models/packed.py) unless `packed` is False."""

    def __init__(self, model_dir: str | Path, params: dict, device: str | None = None, packed: bool = True):
        from sentence_transformers import SentenceTransformer

        self.params = params
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.base_dir = base_directory(Path(model_dir))
        self.model = SentenceTransformer(str(self.base_dir), device=self.device, local_files_only=True)
        self.trained: set[str] = set()  # the tensors overlaid on the base
        if self.base_dir != Path(model_dir):
            self.trained = load_trained(self.transformer, Path(model_dir))
        self.model.max_seq_length = params["max_length"]
        self.packed = packed and packable(self.model)

    @property
    def transformer(self):
        """The underlying transformers model (its word embeddings, its config)."""
        return self.model[0].auto_model

    def prefix(self, kind: str) -> str:
        return self.params[f"{kind}_prefix"]

    def features(self, texts: list[str], kind: str) -> dict:
        features = self.model.preprocess([self.prefix(kind) + text for text in texts])
        return {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}

    def embed(self, texts: list[str], kind: str) -> torch.Tensor:
        """L2-normalised embeddings of `texts` (kind is 'query' or 'passage'), differentiable."""
        features = self.features(texts, kind)
        if self.packed:
            pooled = packed_sentence_embeddings(
                self.model, features["input_ids"], features["attention_mask"], features.get("token_type_ids")
            )
        else:
            pooled = self.model(features)["sentence_embedding"]
        return torch.nn.functional.normalize(pooled, dim=-1)

    def frozen_states(self, texts: list[str], kind: str, layers: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The packed token states of `texts` entering layer `layers` (after the embedding
        layer and the layers below), and each text's token count."""
        features = self.features(texts, kind)
        ids, mask = features["input_ids"], features["attention_mask"]
        hidden = packed_input_states(self.transformer, ids, mask, features.get("token_type_ids"))
        lengths = mask.sum(1)
        return packed_layers(self.transformer, hidden, lengths, 0, layers), lengths

    def embed_states(self, hidden: torch.Tensor, lengths: torch.Tensor, first: int) -> torch.Tensor:
        """L2-normalised embeddings from packed states entering layer `first` (frozen_states)."""
        hidden, lengths = hidden.to(self.device), lengths.to(self.device)
        hidden = packed_layers(self.transformer, hidden, lengths, first)
        return torch.nn.functional.normalize(packed_pooling(self.model[1].pooling_mode, hidden, lengths), dim=-1)

    def token_counts(self, texts: list[str], kind: str, chunk: int = 10_000) -> np.ndarray:
        """Tokens of each text with its prefix and special tokens, after truncation (counted
        `chunk` texts at a time, so the token ids of a large shard are never all held)."""
        tokenizer, prefix = self.model.tokenizer, self.prefix(kind)
        counts = []
        for start in range(0, len(texts), chunk):
            ids = tokenizer(
                [prefix + text for text in texts[start : start + chunk]],
                truncation=True,
                max_length=self.model.max_seq_length,
            )["input_ids"]
            counts.append(np.fromiter(map(len, ids), dtype=np.int64, count=len(ids)))
        return np.concatenate(counts) if counts else np.zeros(0, np.int64)

    @torch.inference_mode()
    def encode(self, texts: list[str], kind: str, batch_size: int, desc: str = "encode") -> np.ndarray:
        """Embeddings of `texts` in batches of similar token counts. Sorted by tokens, not
        characters: in a multilingual mix a character is a token in Chinese and a fifth of one
        in English, so character-sorted batches pad about twice as much (benchmarks/encoding_speed.py)."""
        self.model.eval()
        dimension = self.model.get_embedding_dimension()
        embed = lambda batch: self.embed(batch, kind)  # noqa: E731
        return encode_by_length(embed, texts, self.token_counts(texts, kind), batch_size, dimension, desc)

    @property
    def dimension(self) -> int:
        return self.model.get_embedding_dimension()

    def save(self, out_dir: str | Path) -> None:
        """As the tensors that differ from the base directory (save_trained), where only the
        transformer holds weights and the base has them in the same layout; else whole."""
        other_weights = any(p.numel() for module in list(self.model)[1:] for p in module.parameters())
        state = self.transformer.state_dict()
        if other_weights or not save_trained(state, self.base_dir, Path(out_dir), self.params["max_length"], True):
            save_sentence_transformer(self.model, self.params, out_dir)


def save_trained(state: dict, base_dir: Path, out_dir: Path, max_length: int, whole: bool) -> bool:
    """Write `trained.safetensors` (the tensors of `state` that differ from the base's) and
    `base.json`; False, writing nothing, when the base has no weights file, lacks one of the
    tensors or holds it in another shape, or (`whole`: `state` is the whole transformer's)
    holds tensors `state` does not."""
    if not (base_dir / WEIGHTS).is_file():
        return False
    changed = {}
    with safe_open(str(base_dir / WEIGHTS), framework="pt") as base:
        names = set(base.keys())
        if not set(state) <= names or (whole and names != set(state)):
            return False
        for name, tensor in state.items():
            reference = base.get_tensor(name)
            if reference.shape != tensor.shape:
                return False
            if not torch.equal(tensor.detach().cpu(), reference):
                changed[name] = tensor.detach().cpu().contiguous()
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(changed, str(out_dir / TRAINED))
    reference = {
        "path": os.path.relpath(base_dir, out_dir),
        "sha256": weights_sha256(base_dir / WEIGHTS),
        "max_length": max_length,
    }
    (out_dir / BASE).write_text(json.dumps(reference, indent=2, sort_keys=True))
    return True


def encode_by_length(embed, texts: list[str], counts: np.ndarray, batch_size: int, dimension: int, desc: str):
    """`embed` over batches of texts of similar token `counts`, back in the texts' order.
    Each distinct text is embedded once, so equal texts get equal vectors whatever their
    batches: their scores tie exactly, and the rank engine's tie rule orders them."""
    _, first, inverse = np.unique(np.asarray(texts, dtype=object), return_index=True, return_inverse=True)
    rows = np.sort(first)  # each distinct text's first row, in the texts' order
    order = rows[np.argsort(np.asarray(counts)[rows], kind="stable")]
    out = np.empty((len(texts), dimension), dtype=np.float32)
    for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", mininterval=5):
        index = order[start : start + batch_size]
        out[index] = embed([texts[i] for i in index]).float().cpu().numpy()
    return out if len(rows) == len(texts) else out[first[inverse.reshape(-1)]]


def weights_sha256(path: Path) -> str:
    """A weights file's sha256 as its artifact's manifest records it, where the file has the
    recorded size and was not modified after the manifest (the audit's quick rule); else
    computed (1.7 s for e5-small)."""
    manifest = path.parent / MANIFEST
    if manifest.is_file():
        record = json.loads(manifest.read_text()).get("files", {}).get(path.name)
        stat = path.stat()
        if record and record["bytes"] == stat.st_size and stat.st_mtime_ns <= manifest.stat().st_mtime_ns:
            return record["sha256"]
    return sha256_file(path)


def base_reference(model_dir: Path) -> tuple[Path, str] | None:
    """The base directory `base.json` names and the sha256 recorded for its weights (None:
    `model_dir` is a full directory)."""
    if not (model_dir / BASE).is_file():
        return None
    reference = json.loads((model_dir / BASE).read_text())
    base = Path(os.path.normpath(model_dir / reference["path"]))
    if not (base / WEIGHTS).is_file():
        raise FileNotFoundError(f"{model_dir / BASE}: its base model {base} has no {WEIGHTS}")
    return base, reference["sha256"]


def check_base(model_dir: Path, base: Path, recorded: str, digest: str) -> None:
    if digest != recorded:
        raise ValueError(
            f"{model_dir / BASE}: {base / WEIGHTS} has sha256 {digest}, not {recorded}, the base this model "
            "was trained from: rebuild the model"
        )


def base_directory(model_dir: Path) -> Path:
    """The full directory a model loads from: itself, or the base its `base.json` names,
    after checking the base's weights are the ones it was trained from."""
    reference = base_reference(model_dir)
    if reference is None:
        return model_dir
    base, recorded = reference
    check_base(model_dir, base, recorded, weights_sha256(base / WEIGHTS))
    return base


def load_trained(transformer: torch.nn.Module, model_dir: Path) -> set[str]:
    """Overlay the trained tensors of `model_dir` on a transformer loaded from its base;
    their names."""
    trained = load_file(str(model_dir / TRAINED))
    unknown = sorted(set(trained) - set(transformer.state_dict()))
    if unknown:
        raise ValueError(f"{model_dir / TRAINED}: tensors the base model does not have: {unknown[:3]}")
    transformer.load_state_dict(trained, strict=False)
    return set(trained)


def export_model(model_dir: str | Path, out_dir: str | Path) -> None:
    """Write the full sentence-transformers directory of a model stored as trained tensors:
    its base's files, the base's weights with the trained tensors overlaid, and its token limit."""
    from sentence_transformers import SentenceTransformer

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} exists: export-model does not overwrite")
    if base_reference(model_dir) is None:
        raise ValueError(f"{model_dir}: has no {BASE}; it is already a full directory")
    model = SentenceTransformer(str(base_directory(model_dir)), device="cpu", local_files_only=True)
    load_trained(model[0].auto_model, model_dir)
    model.max_seq_length = json.loads((model_dir / BASE).read_text())["max_length"]
    tmp = out_dir.with_name(f".{out_dir.name}{TEMPORARY_SUFFIX}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(str(tmp), safe_serialization=True)
    tmp.rename(out_dir)


def save_sentence_transformer(model, params: dict, out_dir: str | Path) -> None:
    """Save with the config's prompts, as safetensors: `SentenceTransformer(out_dir)` and
    (for the transformer) `AutoModel.from_pretrained(out_dir)` load it."""
    model.prompts = {"query": params["query_prefix"], "passage": params["passage_prefix"]}
    if model.default_prompt_name not in model.prompts:
        model.default_prompt_name = None
    model.save(str(out_dir), safe_serialization=True)


def save_encoder(model, tokenizer, params: dict, out_dir: str | Path) -> None:
    """Wrap a bare transformers model as transformer + pooling (config `pooling`) +
    Normalize and save it (see save_sentence_transformer)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    transformer = Transformer(str(out_dir), max_seq_length=params["max_length"])
    pooling = Pooling(model.config.hidden_size, pooling_mode="cls" if params["pooling"] == "cls" else "mean")
    wrapper = SentenceTransformer(
        modules=[transformer, pooling, Normalize()], similarity_fn_name="cosine", device="cpu"
    )
    save_sentence_transformer(wrapper, params, out_dir)
