"""Image files, each read once: hashed, and decoded in full, an error naming the file."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from hybridbatch.artifacts.schema import SchemaError


def read_image(path: Path, digest: str | None = None, checks: bool = False) -> tuple[Image.Image, str]:
    """The decoded image at `path` and the sha256 of its bytes, refused unless they have
    `digest` (where given). `checks` runs PIL's checks first (PNG chunk checksums); a full
    decode is what finds a truncated JPEG."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise SchemaError(f"{path}: missing or not a readable image ({error})") from error
    actual = hashlib.sha256(data).hexdigest()
    if digest is not None and actual != digest:
        raise SchemaError(f"{path}: sha256 differs from the one prepare recorded ({digest})")
    try:
        if checks:
            Image.open(io.BytesIO(data)).verify()
        image = Image.open(io.BytesIO(data))
        image.load()
    except (OSError, SyntaxError, UnidentifiedImageError) as error:
        raise SchemaError(f"{path}: missing or not a readable image ({error})") from error
    return image, actual
