"""ImageFolder: ``root/<class>/<image>``, classes in sorted order. Decoding images needs Pillow, an
optional extra (``pip install pillow`` or ``pip install ember[vision]``); a custom ``loader`` needs
nothing."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from ember.utils.data import Dataset

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def pil_loader(path: str) -> Any:
    """Open an image file with Pillow as RGB."""
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(
            "ImageFolder needs Pillow to decode images: pip install pillow (or pass loader=...)"
        ) from None
    with open(path, "rb") as f:
        return Image.open(f).convert("RGB")


def find_classes(directory: str) -> tuple[list[str], dict[str, int]]:
    """Sub-folder names of ``directory`` (sorted) and their indices."""
    classes = sorted(e.name for e in os.scandir(directory) if e.is_dir())
    if not classes:
        raise FileNotFoundError(f"Couldn't find any class folder in {directory}.")
    return classes, {c: i for i, c in enumerate(classes)}


class DatasetFolder(Dataset):
    """Files under ``root/<class>/`` whose names end with one of ``extensions``, read with ``loader``."""

    def __init__(
        self,
        root: str,
        loader: Callable[[str], Any],
        extensions: Sequence[str] | None = None,
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[Any], Any] | None = None,
        is_valid_file: Callable[[str], bool] | None = None,
    ) -> None:
        self.root = str(root)
        self.loader, self.transform, self.target_transform = loader, transform, target_transform
        self.classes, self.class_to_idx = find_classes(self.root)
        if is_valid_file is None:
            exts = tuple(e.lower() for e in (extensions or ()))

            def is_valid_file(path: str) -> bool:
                return path.lower().endswith(exts)

        self.samples: list[tuple[str, int]] = []
        for cls in self.classes:
            for dirpath, _, files in sorted(os.walk(os.path.join(self.root, cls), followlinks=True)):
                for name in sorted(files):
                    path = os.path.join(dirpath, name)
                    if is_valid_file(path):
                        self.samples.append((path, self.class_to_idx[cls]))
        if not self.samples:
            raise FileNotFoundError(
                f"Found no valid file for the classes {', '.join(self.classes)}. Supported"
                f" extensions are: {', '.join(extensions or ())}"
            )
        self.targets = [t for _, t in self.samples]
        self.imgs = self.samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        path, target = self.samples[index]
        sample = self.loader(path)
        if self.transform is not None:
            sample = self.transform(sample)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return sample, target


class ImageFolder(DatasetFolder):
    """Images under ``root/<class>/``; decoded with Pillow unless ``loader`` is given."""

    def __init__(
        self,
        root: str,
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[Any], Any] | None = None,
        loader: Callable[[str], Any] = pil_loader,
        is_valid_file: Callable[[str], bool] | None = None,
    ) -> None:
        super().__init__(
            root,
            loader,
            IMG_EXTENSIONS if is_valid_file is None else None,
            transform,
            target_transform,
            is_valid_file,
        )
