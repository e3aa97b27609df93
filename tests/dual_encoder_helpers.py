"""Helpers the tests of several modules share: images."""

import numpy as np
from PIL import Image


def images(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8)) for i in range(n)]
