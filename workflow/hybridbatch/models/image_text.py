"""An image-text model is two towers and how they score. Two kinds share one interface
(what LiT training and the image-text evaluation call):

* `ImageTextModel`: a text tower (a sentence-transformers encoder) and the locked image
  tower's cached features mapped into the text space by a trained linear projection,
  cosine scores over a temperature. Saved as `text/` (a sentence-transformers directory),
  `image_projection.safetensors` (projection weight and bias, log of the logit scale) and
  `model.json`.
* `DualEncoderImageText` (models/dual_encoder.py): a pretrained CLIP-family model whose image
  features are already in the joint space; saved whole in its transformers format.

`start_model` builds the model a LiT run starts from, `load_model` reads a saved one.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from hybridbatch.artifacts.vectors import read_embeddings
from hybridbatch.models.caption_states import CAPTION, LAYERS_KEY, CaptionStates
from hybridbatch.models.dual_encoder import DualEncoderImageText, check_layers
from hybridbatch.models.encoders import Encoder, encode_by_length
from hybridbatch.models.packed_encoder import PackedEncoder, load_encoder
from hybridbatch.names import is_dual_encoder

MIN_TEMPERATURE = 0.01  # CLIP's cap on the logit scale (100)
PROJECTION_FILE = "image_projection.safetensors"


class ImageTextModel(torch.nn.Module):
    """Text tower + image projection over locked image features + temperature. With caption
    states, the text tower holds only its layers above them (models/packed_encoder.py)."""

    default_objective = "symmetric-info-nce"
    bias = None
    images_locked = False  # the image projection trains

    def __init__(self, text: Encoder | PackedEncoder, image_dim: int, temperature: float, learnable_temperature: bool,
                 states: CaptionStates | None = None):  # fmt: skip
        super().__init__()
        self.text = text  # not a submodule: it places itself (cuda when there is one)
        self.image_projection = torch.nn.Linear(image_dim, text.dimension)
        self.log_scale = torch.nn.Parameter(
            torch.tensor(math.log(1 / temperature)), requires_grad=learnable_temperature
        )
        self.trained_modules = [text.model]
        self.states = states
        self.to(text.device)

    @property
    def temperature(self) -> torch.Tensor:
        return 1 / self.log_scale.clamp(max=math.log(1 / MIN_TEMPERATURE)).exp()

    def unfreeze(self, layers: int | str, key: str) -> None:
        """Train the top `layers` transformer layers ('all': every layer); word embeddings
        stay. The layers below the trained ones stay in eval mode (no dropout), as their
        cached states (use_states) have them."""
        transformer = self.text.transformer
        blocks = transformer.encoder.layer
        check_layers(layers, len(blocks), key)
        if self.states is not None and (layers == "all" or len(blocks) - layers < self.states.layers):
            raise ValueError(
                f"{self.states.path}: states after {self.states.layers} layers, but the text tower trains {layers} "
                f"of its {len(blocks)}; rebuild them for config key {LAYERS_KEY}"
            )
        for parameter in transformer.parameters():
            parameter.requires_grad_(layers == "all")
        if self.states is None:  # with states, the tower has no embeddings
            transformer.get_input_embeddings().weight.requires_grad_(False)
        if layers != "all":
            for block in blocks[len(blocks) - layers :]:
                block.requires_grad_(True)
            self.text.model.eval()
            self.trained_modules = list(blocks[len(blocks) - layers :])

    def use_states(self, states: CaptionStates) -> None:
        """Embed captions from their states entering layer `states.layers`, which the
        layers below must not have changed from (trained weights) or change (trainable)."""
        trainable = {name for name, p in self.text.transformer.named_parameters() if p.requires_grad}
        below = sorted(name for name in self.text.trained | trainable if layer_of(name) < states.layers)
        if below:
            raise ValueError(
                f"{states.path}: states after {states.layers} layers, but the text tower trained {below[:3]}; "
                f"rebuild them for config key {LAYERS_KEY}"
            )
        self.states = states

    def trainable(self) -> dict[str, torch.nn.Parameter]:
        named = {f"text.{name}": p for name, p in self.text.model.named_parameters() if p.requires_grad}
        return named | {name: p for name, p in self.named_parameters() if p.requires_grad}

    def is_projection(self, name: str) -> bool:
        """The image projection and the temperature (not the text tower) train at their own rate."""
        return not name.startswith("text.")

    def modules_to_train(self) -> list[torch.nn.Module]:
        return self.trained_modules

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        if self.states is None:
            return self.text.embed(texts, CAPTION)
        return self.text.embed_states(*self.states.lookup(texts), self.states.layers)

    def embed_images(self, features: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.image_projection(features.to(self.device)), dim=-1)

    @torch.inference_mode()
    def encode_texts(self, texts: list[str], batch_size: int, desc: str = "captions") -> np.ndarray:
        if self.states is None:
            return self.text.encode(texts, CAPTION, batch_size, desc=desc)
        self.text.model.eval()
        counts = self.states.token_counts(texts)
        return encode_by_length(self.embed_texts, texts, counts, batch_size, self.text.dimension, desc)

    def save(self, out_dir: str | Path, description: dict) -> None:
        out_dir = Path(out_dir)
        self.text.save(out_dir / "text")
        tensors = {
            "weight": self.image_projection.weight,
            "bias": self.image_projection.bias,
            "log_scale": self.log_scale,
        }
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(out_dir / PROJECTION_FILE))
        (out_dir / "model.json").write_text(json.dumps(description, indent=2, sort_keys=True))

    @classmethod
    def load(cls, model_dir: str | Path, text_params: dict, states: CaptionStates | None = None) -> ImageTextModel:
        """A saved model; with `states`, only its text layers above them."""
        model_dir = Path(model_dir)
        tensors = load_file(str(model_dir / PROJECTION_FILE))
        model = cls(text_tower(model_dir / "text", text_params, states), tensors["weight"].shape[1], 1.0, False, states)
        with torch.no_grad():
            model.image_projection.weight.copy_(tensors["weight"])
            model.image_projection.bias.copy_(tensors["bias"])
            model.log_scale.copy_(tensors["log_scale"])
        model.text.model.requires_grad_(False)  # not a submodule (see __init__)
        return model.requires_grad_(False).eval()

    @property
    def device(self) -> str:
        return self.text.device


def text_tower(model_dir: Path, text_params: dict, states: CaptionStates | None, device: str | None = None):
    """The whole text encoder, or, from caption states, only its layers above them."""
    return load_encoder(model_dir, text_params, device, states.layers if states else 0)


def layer_of(name: str) -> float:
    """The transformer layer a tensor belongs to (-1 for the embeddings, inf above the layers)."""
    found = re.match(r"encoder\.layer\.(\d+)\.", name)
    return int(found.group(1)) if found else (-1 if name.startswith("embeddings.") else math.inf)


def start_model(base: str | Path, text_params: dict, image_dim: int, temperature: float | None, learnable: bool,
                device: str, states: CaptionStates | None = None):  # fmt: skip
    """The model a LiT run starts from: the base text model (from `states`, only its layers
    above them) with a new image projection, or a dual encoder as its checkpoint has it
    (temperature None: the checkpoint's)."""
    if is_dual_encoder(text_params):
        model = DualEncoderImageText(base, device)
        model.set_temperature(temperature, learnable)
        return model
    return ImageTextModel(
        text_tower(Path(base), text_params, states, device), image_dim, temperature, learnable, states
    )


def load_model(model_dir: str | Path, text_params: dict, states: CaptionStates | None = None):
    """A saved image-text model (trained, or a dual encoder's base), in eval mode."""
    if is_dual_encoder(text_params):
        return DualEncoderImageText(model_dir).eval()
    return ImageTextModel.load(model_dir, text_params, states)


def read_features(path: Path) -> tuple[dict[str, int], torch.Tensor]:
    ids, _, vectors = read_embeddings(path)
    return {pid: row for row, pid in enumerate(ids)}, torch.from_numpy(np.array(vectors, dtype=np.float32))
