"""params.yaml's ``data`` section: which images, at what size (download and prepare read it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from gan.sections import opt


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    section: ClassVar[str] = "data"

    dataset: str = opt()  # gan.data.DATASET_NAMES
    image_size: int = opt(min=8, max=256)
    mirror: str | None = opt(None)
    # image_folder: the folder of the user's images (the IDX datasets ignore it)
    path: str | None = opt("docs/example_images")
    channels: int | None = opt(None, choices=(1, 3))  # image_folder: null keeps the files' own
    # image_folder: the colour transparent pixels are composited onto (a name or #rrggbb,
    # gan.image_folder.background_rgb); the IDX datasets have no transparency
    background: str = opt("white")
