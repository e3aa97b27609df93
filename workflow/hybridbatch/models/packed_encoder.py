"""A BERT-family sentence encoder in plain torch: the model the stages run wherever the
packed pass covers it (models/packed.py: absolute positions, mean or CLS pooling over every
token, then L2 normalisation). It is built from the model directory's `config.json`,
`tokenizer.json` and weights, without importing transformers or sentence-transformers (5 s
of every job's start-up), and with only the layers a job runs: from caption states
(models/caption_states.py), the layers above them, never the embeddings or the layers below
(e5-small: 466 MB of weights not read).

Its modules carry transformers' names and its tokenizer is the same `tokenizers` one
transformers wraps, so its token ids, embeddings, parameters (in the same order) and dropout
draws are those of `Encoder`, the sentence-transformers model (tests: equal to it, gradients
and trained weights included). `load_encoder` picks it, or `Encoder` for any other model.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file

from hybridbatch.models.encoders import (
    BASE,
    TRAINED,
    WEIGHTS,
    Encoder,
    base_directory,
    base_reference,
    encode_by_length,
    save_trained,
)
from hybridbatch.models.packed import (
    PACKABLE_MODEL_TYPES,
    POOLING_MODES,
    packed_input_states,
    packed_layers,
    packed_pooling,
)

ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu}  # transformers' ACT2FN entries these layers may use
POOLING = "sentence_transformers.sentence_transformer.modules.pooling.Pooling"
NORMALIZE = "sentence_transformers.base.modules.normalize.Normalize"
TRANSFORMER = "sentence_transformers.base.modules.transformer.Transformer"


def parameter(*shape: int) -> torch.nn.Parameter:
    """A weight on the meta device until loaded: building the model draws no random numbers."""
    return torch.nn.Parameter(torch.empty(*shape, device="meta"))


class Linear(torch.nn.Module):
    def __init__(self, rows: int, columns: int):
        super().__init__()
        self.weight, self.bias = parameter(rows, columns), parameter(rows)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class LayerNorm(torch.nn.Module):
    def __init__(self, size: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight, self.bias = parameter(size), parameter(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


class Embedding(torch.nn.Module):
    def __init__(self, rows: int, size: int, padding_idx: int | None = None):
        super().__init__()
        self.padding_idx = padding_idx
        self.weight = parameter(rows, size)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weight, self.padding_idx)


class Intermediate(torch.nn.Module):
    def __init__(self, config: SimpleNamespace):
        super().__init__()
        self.dense = Linear(config.intermediate_size, config.hidden_size)
        self.activation = ACTIVATIONS[config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(x))


def module(**children: torch.nn.Module) -> torch.nn.Module:
    container = torch.nn.Module()
    for name, child in children.items():
        setattr(container, name, child)
    return container


def embeddings(config: SimpleNamespace) -> torch.nn.Module:
    """transformers' BertEmbeddings, or RobertaEmbeddings: positions padded like the words,
    and registered last."""
    hidden, pad = config.hidden_size, config.pad_token_id
    roberta = PACKABLE_MODEL_TYPES[config.model_type]
    positions = {"position_embeddings": Embedding(config.max_position_embeddings, hidden, pad if roberta else None)}
    layers = module(
        word_embeddings=Embedding(config.vocab_size, hidden, pad),
        **({} if roberta else positions),
        token_type_embeddings=Embedding(config.type_vocab_size, hidden),
        LayerNorm=LayerNorm(hidden, config.layer_norm_eps),
        dropout=torch.nn.Dropout(config.hidden_dropout_prob),
        **(positions if roberta else {}),
    )
    layers.padding_idx = pad
    return layers


def layer(config: SimpleNamespace) -> torch.nn.Module:
    """transformers' BertLayer: the same tensor names, in the same order."""
    hidden, eps = config.hidden_size, config.layer_norm_eps
    dropout = lambda: torch.nn.Dropout(config.hidden_dropout_prob)  # noqa: E731
    return module(
        attention=module(
            self=module(query=Linear(hidden, hidden), key=Linear(hidden, hidden), value=Linear(hidden, hidden)),
            output=module(dense=Linear(hidden, hidden), LayerNorm=LayerNorm(hidden, eps), dropout=dropout()),
        ),
        intermediate=Intermediate(config),
        output=module(
            dense=Linear(hidden, config.intermediate_size), LayerNorm=LayerNorm(hidden, eps), dropout=dropout()
        ),
    )


def packed_pooling_mode(model_dir: Path) -> str | None:
    """The pooling of a sentence-transformers directory whose modules the packed pass covers
    (a transformer, mean or CLS pooling over every token, perhaps Normalize); else None."""
    try:
        modules = [entry["type"] for entry in json.loads((model_dir / "modules.json").read_text())]
        pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
        config = json.loads((model_dir / "config.json").read_text())
    except (FileNotFoundError, KeyError, TypeError):
        return None
    if modules not in ([TRANSFORMER, POOLING], [TRANSFORMER, POOLING, NORMALIZE]):
        return None
    if pooling.get("pooling_mode") not in POOLING_MODES or not pooling.get("include_prompt", True):
        return None
    if (
        config.get("model_type") not in PACKABLE_MODEL_TYPES
        or config.get("hidden_act") not in ACTIVATIONS
        or config.get("position_embedding_type", "absolute") not in (None, "absolute")
        or config.get("is_decoder", False)
        or not (model_dir / "tokenizer.json").is_file()
    ):
        return None
    return pooling["pooling_mode"]


class PackedEncoder(torch.nn.Module):
    """The encoder in `model_dir` (a trained directory or a full one) from layer `first` up:
    with `first` 0, the whole model from text; above, from packed states entering layer
    `first` (embed_states), its embeddings and lower layers never built."""

    def __init__(self, model_dir: str | Path, params: dict, device: str | None = None, first: int = 0):
        super().__init__()
        model_dir = Path(model_dir)
        self.params, self.first = params, first
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.base_dir = base_directory(model_dir)
        self.pooling = packed_pooling_mode(self.base_dir)
        if self.pooling is None:
            raise ValueError(f"{self.base_dir}: not a model the packed pass covers (models/packed_encoder.py)")
        self.config = SimpleNamespace(**json.loads((self.base_dir / "config.json").read_text()))
        if first == 0:
            self.embeddings = embeddings(self.config)
        blocks = [torch.nn.Identity() if index < first else layer(self.config) for index in range(self.layer_count)]
        self.encoder = module(layer=torch.nn.ModuleList(blocks))
        self.load_state_dict(self.read_weights(model_dir), assign=True)
        self.to(self.device)

    @functools.cached_property
    def tokenizer(self):
        """The base's tokenizer, truncating at the model's token limit; read when first used
        (0.6 s for XLM-R's: a job from caption states never tokenizes)."""
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(self.base_dir / "tokenizer.json"))
        tokenizer.no_padding()
        tokenizer.enable_truncation(self.params["max_length"])
        return tokenizer

    @property
    def layer_count(self) -> int:
        return self.config.num_hidden_layers

    def read_weights(self, model_dir: Path) -> dict[str, torch.Tensor]:
        """This model's tensors: the base's, with a trained directory's overlaid."""
        names = [name for name, _ in self.named_parameters()]
        with safe_open(str(self.base_dir / WEIGHTS), framework="pt") as base:
            tensors = {name: base.get_tensor(name) for name in names}
        self.trained: set[str] = set()  # the tensors overlaid on the base's
        if self.base_dir != model_dir:
            trained = load_file(str(model_dir / TRAINED))
            outside = sorted(set(trained) - set(names))
            if outside:
                raise ValueError(
                    f"{model_dir / TRAINED}: trained tensors this model does not run from layer {self.first}: "
                    f"{outside[:3]}; rebuild the caption states for this model"
                )
            tensors |= trained
            self.trained = set(trained)
        return tensors

    @property
    def model(self) -> PackedEncoder:
        """The model as one torch module (Encoder.model's role)."""
        return self

    @property
    def transformer(self) -> PackedEncoder:
        """The transformer (Encoder.transformer's role): its config, embeddings and layers."""
        return self

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.embeddings.word_embeddings

    def get_embedding_dimension(self) -> int:
        return self.config.hidden_size

    @property
    def dimension(self) -> int:
        return self.config.hidden_size

    def prefix(self, kind: str) -> str:
        return self.params[f"{kind}_prefix"]

    def features(self, texts: list[str], kind: str) -> dict[str, torch.Tensor]:
        """Token ids, type ids and attention mask of `texts` with the prefix, padded, as the
        sentence-transformers model's preprocess gives them."""
        encodings = self.tokenizer.encode_batch([self.prefix(kind) + text for text in texts])
        length = max((len(e.ids) for e in encodings), default=0)
        ids, types = (np.zeros((len(texts), length), np.int64) for _ in range(2))
        mask = np.zeros((len(texts), length), np.int64)
        ids[:] = self.config.pad_token_id
        for row, encoding in enumerate(encodings):
            count = len(encoding.ids)
            ids[row, :count], types[row, :count], mask[row, :count] = encoding.ids, encoding.type_ids, 1
        return {
            name: torch.from_numpy(array).to(self.device)
            for name, array in (("input_ids", ids), ("token_type_ids", types), ("attention_mask", mask))
        }

    def embed(self, texts: list[str], kind: str) -> torch.Tensor:
        """L2-normalised embeddings of `texts` (kind is 'query' or 'passage'), differentiable."""
        hidden, lengths = self.frozen_states(texts, kind, self.layer_count)
        return F.normalize(packed_pooling(self.pooling, hidden, lengths), dim=-1)

    def frozen_states(self, texts: list[str], kind: str, layers: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The packed token states of `texts` entering layer `layers`, and each text's token count."""
        if self.first:
            raise ValueError(f"{self.base_dir}: built from layer {self.first}; it embeds from states only")
        features = self.features(texts, kind)
        ids, mask = features["input_ids"], features["attention_mask"]
        hidden = packed_input_states(self, ids, mask, features["token_type_ids"])
        lengths = mask.sum(1)
        return packed_layers(self, hidden, lengths, 0, layers), lengths

    def embed_states(self, hidden: torch.Tensor, lengths: torch.Tensor, first: int) -> torch.Tensor:
        """L2-normalised embeddings from packed states entering layer `first`."""
        hidden, lengths = hidden.to(self.device), lengths.to(self.device)
        hidden = packed_layers(self, hidden, lengths, first)
        return F.normalize(packed_pooling(self.pooling, hidden, lengths), dim=-1)

    def token_counts(self, texts: list[str], kind: str, chunk: int = 10_000) -> np.ndarray:
        """Tokens of each text with its prefix and special tokens, after truncation."""
        prefix, counts = self.prefix(kind), []
        for start in range(0, len(texts), chunk):
            encodings = self.tokenizer.encode_batch([prefix + text for text in texts[start : start + chunk]])
            counts.append(np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings)))
        return np.concatenate(counts) if counts else np.zeros(0, np.int64)

    @torch.inference_mode()
    def encode(self, texts: list[str], kind: str, batch_size: int, desc: str = "encode") -> np.ndarray:
        """Embeddings of `texts` in batches of similar token counts (Encoder.encode)."""
        self.eval()
        embed = lambda batch: self.embed(batch, kind)  # noqa: E731
        return encode_by_length(embed, texts, self.token_counts(texts, kind), batch_size, self.dimension, desc)

    def save(self, out_dir: str | Path) -> None:
        """As a trained directory: base.json and the tensors that differ from the base's."""
        if not save_trained(self.state_dict(), self.base_dir, Path(out_dir), self.params["max_length"], False):
            raise ValueError(f"{self.base_dir / WEIGHTS}: does not hold this model's tensors; cannot write {BASE}")


def load_encoder(model_dir: str | Path, params: dict, device: str | None = None, first: int = 0):
    """The encoder the stages run: a PackedEncoder where the packed pass covers the model,
    else the sentence-transformers `Encoder` (from text only: `first` 0)."""
    reference = base_reference(Path(model_dir))
    if packed_pooling_mode(reference[0] if reference else Path(model_dir)) is not None:
        return PackedEncoder(model_dir, params, device, first)
    if first:
        raise ValueError(f"{model_dir}: caption states need a BERT-family encoder with mean or CLS pooling")
    return Encoder(model_dir, params, device=device)
