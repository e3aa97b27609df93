"""Tiny random CLIP, SigLIP and SigLIP 2 models built from configs and saved with `save_pretrained`
(model, tokenizer, PIL image processor), as a hub checkpoint would be laid out."""

from pathlib import Path

import torch

TEXTS = ["a red circle", "ein blauer Kreis auf weißem Grund", "красный квадрат", "绿色三角形", "a"]


TINY_VISION = {  # the vision tower of every tiny dual encoder: 2 layers, 32-px images in 8-px patches
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "image_size": 32,
    "patch_size": 8,
}


def xlmr_tokenizer(max_length: int):
    """The XLM-R tokenizer shipped (offline) with the e5 model's package."""
    from importlib.resources import files

    from transformers import PreTrainedTokenizerFast

    path = files("semantra_multilingual") / "assets/multilingual-e5-small/tokenizer.json"
    return PreTrainedTokenizerFast(
        tokenizer_file=str(path),
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        model_max_length=max_length,
    )


def bpe_tokenizer():
    """A BERT-style BPE tokenizer ([SEP] id 3 ends a text), learned from a few captions."""
    from hybridbatch.models.base_model import train_tokenizer

    return train_tokenizer(TEXTS * 20, 300)


def tiny_clip(out: Path, seed: int = 0) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    tokenizer = bpe_tokenizer()
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 3,
        "num_attention_heads": 2,
        "max_position_embeddings": 40,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.cls_token_id,
        "eos_token_id": tokenizer.sep_token_id,
    }

    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=TINY_VISION, projection_dim=16))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(out)
    return out


def siglip_text(tokenizer, layers: int) -> dict:
    """A tiny SigLIP (or SigLIP 2) text tower over `tokenizer`, 16 positions."""
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": layers,
        "num_attention_heads": 2,
        "max_position_embeddings": 16,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }


def tiny_siglip(out: Path, seed: int = 0) -> Path:
    from transformers import SiglipConfig, SiglipImageProcessorPil, SiglipModel

    tokenizer = xlmr_tokenizer(16)
    torch.manual_seed(seed)
    model = SiglipModel(SiglipConfig(text_config=siglip_text(tokenizer, 3), vision_config=TINY_VISION))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    SiglipImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(out)
    return out


def tiny_siglip2(out: Path, seed: int = 0) -> Path:
    """SigLIP 2 (NaFlex: images as up to 16 patches of 8 px at their own aspect ratio)."""
    from transformers import Siglip2Config, Siglip2ImageProcessorPil, Siglip2Model

    tokenizer = xlmr_tokenizer(16)
    vision = {key: value for key, value in TINY_VISION.items() if key != "image_size"} | {"num_patches": 16}
    torch.manual_seed(seed)
    Siglip2Model(Siglip2Config(text_config=siglip_text(tokenizer, 2), vision_config=vision)).save_pretrained(out)
    tokenizer.save_pretrained(out)
    Siglip2ImageProcessorPil(patch_size=8, max_num_patches=16).save_pretrained(out)
    return out
