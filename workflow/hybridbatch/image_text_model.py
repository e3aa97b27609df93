"""An image-text model is two towers and how they score: a text tower (a
sentence-transformers encoder), the locked image tower's cached features mapped into
the text space by a trained linear projection, and cosine scores over a temperature.

Saved as `text/` (a sentence-transformers directory), `image_projection.safetensors`
(projection weight and bias, log of the logit scale) and `model.json`;
`ImageTextModel.load` reads it back.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .encoders import Encoder
from .vectors import read_embeddings

CAPTION = "query"  # captions, as queries or as targets, take the model's query prefix
MIN_TEMPERATURE = 0.01  # CLIP's cap on the logit scale (100)


class ImageTextModel(torch.nn.Module):
    """Text tower + image projection over locked image features + temperature."""

    def __init__(self, text: Encoder, image_dim: int, temperature: float, learnable_temperature: bool):
        super().__init__()
        self.text = text  # not a submodule: it places itself (cuda when there is one)
        text_dim = text.model.get_embedding_dimension()
        self.image_projection = torch.nn.Linear(image_dim, text_dim)
        self.log_scale = torch.nn.Parameter(torch.tensor(math.log(1 / temperature)), requires_grad=learnable_temperature)
        self.to(text.device)

    @property
    def temperature(self) -> torch.Tensor:
        return 1 / self.log_scale.clamp(max=math.log(1 / MIN_TEMPERATURE)).exp()

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        return self.text.embed(texts, CAPTION)

    def embed_images(self, features: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.image_projection(features.to(self.device)), dim=-1)

    def save(self, out_dir: str | Path, description: dict) -> None:
        out_dir = Path(out_dir)
        self.text.save(out_dir / "text")
        tensors = {"weight": self.image_projection.weight, "bias": self.image_projection.bias, "log_scale": self.log_scale}
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(out_dir / "image_projection.safetensors"))
        (out_dir / "model.json").write_text(json.dumps(description, indent=2, sort_keys=True))

    @classmethod
    def load(cls, model_dir: str | Path, text_params: dict) -> "ImageTextModel":
        model_dir = Path(model_dir)
        tensors = load_file(str(model_dir / "image_projection.safetensors"))
        model = cls(Encoder(model_dir / "text", text_params), tensors["weight"].shape[1], 1.0, False)
        with torch.no_grad():
            model.image_projection.weight.copy_(tensors["weight"])
            model.image_projection.bias.copy_(tensors["bias"])
            model.log_scale.copy_(tensors["log_scale"])
        return model.eval()

    @property
    def device(self) -> str:
        return self.text.device


def read_features(path: Path) -> tuple[dict[str, int], torch.Tensor]:
    ids, _, vectors = read_embeddings(path)
    return {pid: row for row, pid in enumerate(ids)}, torch.from_numpy(np.array(vectors, dtype=np.float32))
