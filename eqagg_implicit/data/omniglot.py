"""Handwritten-character images: Omniglot from disk, and scikit-learn's digits.

Both loaders return an :class:`ImageClassDataset` of float32 grayscale images
of shape ``(n, 32, 32, 1)`` in [0, 1], where 1 is ink and 0 is background.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

IMAGE_SIZE = 32

# Omniglot ships its classes in two disjoint folders: the background set is used
# for training and the evaluation set for testing.
OMNIGLOT_SPLIT_FOLDERS: dict[str, str] = {
    "train": "images_background",
    "test": "images_evaluation",
}


@dataclasses.dataclass(frozen=True)
class ImageClassDataset:
    """Labelled images for class counting.

    ``images`` is float32 ``(n, size, size, 1)`` with ink 1 and background 0.
    ``labels`` is int64 ``(n,)`` and indexes ``class_names``. ``sources`` names
    where each image came from: a file path for Omniglot, ``"digits:<i>"`` for
    row ``i`` of scikit-learn's digits.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    sources: tuple[str, ...]

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.ndim != 4 or self.images.shape[-1] != 1:
            raise ValueError(f"images must have shape (n, height, width, 1), got {self.images.shape}")
        if self.labels.shape != (n,) or len(self.sources) != n:
            raise ValueError(
                f"labels {self.labels.shape} and sources ({len(self.sources)}) must have one entry per image ({n})"
            )
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise ValueError(f"labels must lie in [0, {len(self.class_names)}), got {self.labels.min()}..{self.labels.max()}")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _load_png(path: Path, image_size: int) -> np.ndarray:
    """Read one Omniglot PNG as float32 (size, size) with ink 1."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            grayscale = image.convert("L")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"Cannot read image {path}: {error}. Replace or delete the corrupt file.") from error

    resized = grayscale.resize((image_size, image_size), resample=Image.Resampling.BILINEAR)
    pixels = np.asarray(resized, dtype=np.float32) / 255.0
    # Omniglot draws black ink (0) on white paper (255), so invert to make ink 1.
    return 1.0 - pixels


def _list_subfolders(folder: Path) -> list[Path]:
    return sorted(child for child in folder.iterdir() if child.is_dir())


def load_omniglot(root: str | Path, split: str = "train", image_size: int = IMAGE_SIZE) -> ImageClassDataset:
    """Load one Omniglot split from the folder layout of the official release.

    ``root`` must contain ``images_background/<alphabet>/<character>/*.png``
    (split ``"train"``) and ``images_evaluation/...`` (split ``"test"``). A class
    is one character of one alphabet, named ``"<alphabet>/<character>"``, so the
    train and test classes are disjoint. Labels number the classes of the split
    in sorted order. Images are resized to ``image_size`` squared.

    Raises FileNotFoundError for a missing root or split folder, and ValueError
    for a split, alphabet or character folder without content or for a PNG
    that Pillow cannot decode.
    """
    if split not in OMNIGLOT_SPLIT_FOLDERS:
        raise ValueError(f"split must be one of {sorted(OMNIGLOT_SPLIT_FOLDERS)}, got {split!r}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"Omniglot root {root} not found; expected a folder containing "
            f"{OMNIGLOT_SPLIT_FOLDERS['train']}/ and {OMNIGLOT_SPLIT_FOLDERS['test']}/"
        )
    split_folder = root / OMNIGLOT_SPLIT_FOLDERS[split]
    if not split_folder.is_dir():
        raise FileNotFoundError(
            f"Omniglot {split} folder {split_folder} not found; expected "
            f"{split_folder}/<alphabet>/<character>/<image>.png (unpack the Omniglot archive there)"
        )

    alphabets = _list_subfolders(split_folder)
    if not alphabets:
        raise ValueError(f"Omniglot folder {split_folder} contains no alphabet folders")

    images: list[np.ndarray] = []
    labels: list[int] = []
    class_names: list[str] = []
    sources: list[str] = []
    for alphabet in alphabets:
        characters = _list_subfolders(alphabet)
        if not characters:
            raise ValueError(f"Omniglot alphabet folder {alphabet} contains no character folders")
        for character in characters:
            png_files = sorted(character.glob("*.png"))
            if not png_files:
                raise ValueError(f"Omniglot character folder {character} contains no .png images")
            label = len(class_names)
            class_names.append(f"{alphabet.name}/{character.name}")
            for png_file in png_files:
                images.append(_load_png(png_file, image_size))
                labels.append(label)
                sources.append(str(png_file))

    return ImageClassDataset(
        images=np.stack(images)[..., None],
        labels=np.asarray(labels, dtype=np.int64),
        class_names=tuple(class_names),
        sources=tuple(sources),
    )


def load_digits_dataset(
    split: str = "train",
    image_size: int = IMAGE_SIZE,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> ImageClassDataset:
    """Load scikit-learn's handwritten digits, upsampled, as a train or test split.

    The data ships with scikit-learn, so nothing is downloaded: 1797 real 8x8
    digit images of 10 classes, with 16 grey levels where 16 is ink. Images are
    scaled to [0, 1] and upsampled to ``image_size`` squared with bilinear
    interpolation. The split is a fixed seeded split of the images, stratified
    per class, so the train and test splits share no image.

    Unlike Omniglot, the splits share their 10 classes: counting up to 10
    distinct classes needs all 10 digits in both splits. The test split thus
    measures generalisation to new images of seen classes, not to new classes.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from PIL import Image

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")

    digits = load_digits()
    all_indices = np.arange(len(digits.target))
    train_indices, test_indices = train_test_split(
        all_indices, test_size=test_fraction, random_state=seed, stratify=digits.target
    )
    indices = np.sort(train_indices if split == "train" else test_indices)

    images = np.empty((len(indices), image_size, image_size), dtype=np.float32)
    for row, index in enumerate(indices):
        small = Image.fromarray(digits.images[index].astype(np.float32) / 16.0, mode="F")
        large = small.resize((image_size, image_size), resample=Image.Resampling.BILINEAR)
        images[row] = np.asarray(large, dtype=np.float32)

    return ImageClassDataset(
        images=np.clip(images, 0.0, 1.0)[..., None],
        labels=digits.target[indices].astype(np.int64),
        class_names=tuple(str(name) for name in digits.target_names),
        sources=tuple(f"digits:{index}" for index in indices),
    )
