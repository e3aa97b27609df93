"""Pretrained dual encoders through transformers (CLIP, SigLIP, SigLIP 2; no open_clip, no
torchvision): any model with `get_text_features` / `get_image_features`, its own
tokenizer and its PIL image processor.

Text settings come from the checkpoint, per family (`FAMILIES`, keyed by the config's
`model_type`): CLIP pools its end-of-text token under an attention mask, so dynamic
padding gives the padded result; SigLIP and SigLIP 2 were trained on texts padded to 64
tokens without a mask and pool the last position, so they must see exactly that (their
own tokenizer pads and, for SigLIP 2, lowercases). The tower reads at most its position
embeddings' length.

The image side's features are `get_image_features` (pooled and projected into the joint
space, not normalised): the locked tower of LiT, cached once per corpus by the features
stage. The trainable side is the text tower (its top N layers or all of them, word
embeddings kept) with its projection, and the logit scale (and SigLIP's bias), which
start from the checkpoint. A trained model is saved whole with `save_pretrained`, image
tower untouched, so `AutoModel.from_pretrained(dir)` loads it without this project.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from hybridbatch.registry import Registry

TEXT_SETTINGS = "text_settings.json"  # what the base-model stage derived from the checkpoint


@dataclass(frozen=True)
class Family:
    padding: str  # 'longest' (dynamic) or 'max_length' (every text padded to the tower's length)
    attention_mask: bool  # whether the text tower is given the tokenizer's attention mask
    objective: str  # the loss the family was trained with: fine-tuning's default
    projection: str  # the text projection's module path, trained with the text tower
    layers: str  # the text tower's transformer blocks


FAMILIES: Registry[Family] = Registry("dual-encoder family (config model_type)")
FAMILIES.register("clip")(Family("longest", True, "symmetric-info-nce", "text_projection", "text_model.encoder.layers"))
for _name in ("siglip", "siglip2"):
    FAMILIES.register(_name)(Family("max_length", False, "sigmoid", "text_model.head", "text_model.encoder.layers"))


def family_of(config, where: str) -> Family:
    return FAMILIES.lookup(config.model_type, f"{where}/config.json model_type")


def load_image_processor(path: str | Path):
    """The checkpoint's image processor, PIL backend (no torchvision)."""
    from transformers import AutoImageProcessor

    return AutoImageProcessor.from_pretrained(str(path), backend="pil")


class DualEncoder(torch.nn.Module):
    """A transformers dual encoder with its tokenizer, image processor and family settings."""

    def __init__(self, model_dir: str | Path, device: str | None = None):
        from transformers import AutoModel, AutoTokenizer

        super().__init__()
        model_dir = Path(model_dir)
        self.model = AutoModel.from_pretrained(str(model_dir))
        for method in ("get_text_features", "get_image_features"):
            if not hasattr(self.model, method):
                raise ValueError(f"{model_dir}: {type(self.model).__name__} has no {method}; not a dual encoder")
        self.family = family_of(self.model.config, str(model_dir))
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.image_processor = load_image_processor(model_dir)
        self.max_length = self.model.config.text_config.max_position_embeddings
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.to(self.device)

    def settings(self) -> dict:
        """The text settings in force (recorded beside the model)."""
        return {
            "model_type": self.model.config.model_type,
            "max_length": self.max_length,
            "padding_side": self.tokenizer.padding_side,
            **asdict(self.family),
        }

    def text_inputs(self, texts: list[str]) -> dict[str, torch.Tensor]:
        encoded = self.tokenizer(
            texts, padding=self.family.padding, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        names = ["input_ids"] + (["attention_mask"] if self.family.attention_mask else [])
        return {name: encoded[name].to(self.device) for name in names}

    def text_features(self, texts: list[str]) -> torch.Tensor:
        return features(self.model.get_text_features(**self.text_inputs(texts)))

    def image_features(self, images: list) -> torch.Tensor:
        inputs = self.image_processor(images=[image.convert("RGB") for image in images], return_tensors="pt")
        return features(self.model.get_image_features(**{k: v.to(self.device) for k, v in inputs.items()}))

    def save(self, out_dir: str | Path) -> None:
        out_dir = Path(out_dir)
        self.model.save_pretrained(out_dir, safe_serialization=True)
        self.tokenizer.save_pretrained(out_dir)
        self.image_processor.save_pretrained(out_dir)
        (out_dir / TEXT_SETTINGS).write_text(json.dumps(self.settings(), indent=2, sort_keys=True))


def features(output) -> torch.Tensor:
    """get_*_features returns the projected pooled tensor (older transformers) or an output
    whose pooler_output holds it (5.x)."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def import_dual_encoder(path: str | Path, out_dir: str | Path) -> dict:
    """A checkpoint directory saved as the base model: model, tokenizer, PIL image processor
    and the text settings its family implies."""
    encoder = DualEncoder(path, device="cpu")
    encoder.save(out_dir)
    return encoder.settings()


class DualEncoderImageText(torch.nn.Module):
    """The image-text model of a dual encoder: its text tower embeds captions, the cached
    image features (already projected) are only normalised; the logit scale and bias are
    the checkpoint's."""

    images_locked = True  # nothing trainable between the cached features and the image embeddings

    def __init__(self, model_dir: str | Path, device: str | None = None):
        super().__init__()
        self.encoder = DualEncoder(model_dir, device)
        self.device = self.encoder.device

    @property
    def model(self):
        return self.encoder.model

    @property
    def temperature(self) -> torch.Tensor:
        return 1 / self.model.logit_scale.exp()

    @property
    def bias(self) -> torch.Tensor | None:
        return getattr(self.model, "logit_bias", None)

    @property
    def default_objective(self) -> str:
        return self.encoder.family.objective

    def set_temperature(self, temperature: float | None, learnable: bool) -> None:
        """Start from `temperature` (None: the checkpoint's); scale and bias train if `learnable`."""
        if temperature is not None:
            with torch.no_grad():
                self.model.logit_scale.fill_(math.log(1 / temperature))
        for parameter in (self.model.logit_scale, self.bias):
            if parameter is not None:
                parameter.requires_grad_(learnable)

    def unfreeze(self, layers: int | str, key: str) -> None:
        """Train the text tower's top `layers` blocks ('all': the whole text tower but its word
        embeddings), its final norm and its projection; nothing of the image tower."""
        blocks = self.model.get_submodule(self.encoder.family.layers)
        check_layers(layers, len(blocks), key)
        scale, bias = self.model.logit_scale.requires_grad, self.bias is not None and self.bias.requires_grad
        self.model.requires_grad_(False)
        text = self.model.text_model
        if layers == "all":
            text.requires_grad_(True)
            text.embeddings.token_embedding.requires_grad_(False)
        else:
            for block in blocks[len(blocks) - layers :]:
                block.requires_grad_(True)
            text.final_layer_norm.requires_grad_(True)
        self.model.get_submodule(self.encoder.family.projection).requires_grad_(True)
        self.model.logit_scale.requires_grad_(scale)
        if self.bias is not None:
            self.bias.requires_grad_(bias)

    def trainable(self) -> dict[str, torch.nn.Parameter]:
        return {name: p for name, p in self.model.named_parameters() if p.requires_grad}

    def is_projection(self, name: str) -> bool:
        return name.startswith(self.encoder.family.projection + ".")

    def modules_to_train(self) -> list[torch.nn.Module]:
        return [self.model.text_model]

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        return torch.nn.functional.normalize(self.encoder.text_features(texts), dim=-1)

    def embed_images(self, features: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(features.to(self.device), dim=-1)

    @torch.inference_mode()
    def encode_texts(self, texts: list[str], batch_size: int, desc: str = "captions") -> np.ndarray:
        self.model.eval()
        return np.concatenate(
            [
                self.embed_texts(texts[start : start + batch_size]).float().cpu().numpy()
                for start in tqdm(range(0, len(texts), batch_size), desc=desc, unit="batch", mininterval=5)
            ]
        )

    def save(self, out_dir: str | Path, description: dict) -> None:
        self.encoder.save(out_dir)
        (Path(out_dir) / "model.json").write_text(json.dumps(description, indent=2, sort_keys=True))


def check_layers(layers: int | str, available: int, key: str) -> None:
    if layers != "all" and not 1 <= layers <= available:
        raise ValueError(
            f"config key {key}: {layers}, but the text tower has {available} layers (1 to {available}, or 'all')"
        )
