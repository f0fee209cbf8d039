from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from eqagg_implicit.data import (
    ImageClassDataset,
    load_digits_dataset,
    load_omniglot,
    sample_counting_batch,
)


def write_character_png(path: Path, stroke_column: int) -> None:
    """Write a 1-bit Omniglot-style PNG: white paper with one black vertical stroke."""
    image = Image.new("1", (105, 105), color=1)
    ImageDraw.Draw(image).rectangle([stroke_column, 10, stroke_column + 30, 95], fill=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


@pytest.fixture
def omniglot_root(tmp_path: Path) -> Path:
    for split_folder in ("images_background", "images_evaluation"):
        for alphabet in ("Alpha", "Beta"):
            for character in ("character01", "character02"):
                for drawer in range(2):
                    png = tmp_path / split_folder / alphabet / character / f"{split_folder[:4]}_{drawer:02d}.png"
                    write_character_png(png, stroke_column=10 + 30 * drawer)
    return tmp_path


def test_omniglot_loads_tiny_layout(omniglot_root):
    train = load_omniglot(omniglot_root, "train")
    assert train.images.shape == (8, 32, 32, 1)
    assert train.images.dtype == np.float32
    assert train.labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert train.class_names == ("Alpha/character01", "Alpha/character02", "Beta/character01", "Beta/character02")
    assert all("images_background" in source for source in train.sources)


def test_omniglot_inverts_ink(omniglot_root):
    image = load_omniglot(omniglot_root, "train").images[0, ..., 0]
    # The black stroke covers columns 10..40 of 105, about 3..12 of 32.
    assert image[16, 7] > 0.95
    assert image[16, 25] < 0.05
    assert image.min() >= 0.0
    assert image.max() <= 1.0


def test_omniglot_test_split_reads_evaluation_folder(omniglot_root):
    test = load_omniglot(omniglot_root, "test")
    assert len(test) == 8
    assert all("images_evaluation" in source for source in test.sources)


def test_omniglot_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_omniglot(tmp_path / "nowhere", "train")


def test_omniglot_missing_split_folder(omniglot_root):
    for path in sorted((omniglot_root / "images_evaluation").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (omniglot_root / "images_evaluation").rmdir()
    with pytest.raises(FileNotFoundError, match="images_evaluation"):
        load_omniglot(omniglot_root, "test")


def test_omniglot_empty_alphabet(omniglot_root):
    (omniglot_root / "images_background" / "Gamma").mkdir()
    with pytest.raises(ValueError, match="Gamma.*no character folders"):
        load_omniglot(omniglot_root, "train")


def test_omniglot_character_without_png(omniglot_root):
    (omniglot_root / "images_background" / "Alpha" / "character03").mkdir()
    with pytest.raises(ValueError, match="character03.*no .png"):
        load_omniglot(omniglot_root, "train")


def test_omniglot_corrupt_png(omniglot_root):
    corrupt = omniglot_root / "images_background" / "Beta" / "character02" / "broken.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(ValueError, match="broken.png"):
        load_omniglot(omniglot_root, "train")


def test_omniglot_rejects_unknown_split(omniglot_root):
    with pytest.raises(ValueError, match="split"):
        load_omniglot(omniglot_root, "validation")


def test_digits_split_disjoint_and_stratified():
    train = load_digits_dataset("train")
    test = load_digits_dataset("test")
    assert len(train) + len(test) == 1797
    assert set(train.sources).isdisjoint(test.sources)
    assert train.images.shape[1:] == (32, 32, 1)
    assert train.num_classes == test.num_classes == 10
    assert np.bincount(test.labels, minlength=10).min() >= 30
    assert train.images.min() >= 0.0
    assert train.images.max() <= 1.0


def test_digits_split_is_fixed():
    first = load_digits_dataset("test")
    second = load_digits_dataset("test")
    assert first.sources == second.sources
    np.testing.assert_array_equal(first.images, second.images)


def make_label_dataset(images_per_class: list[int]) -> ImageClassDataset:
    """Build a dataset whose image pixels encode the image's own index."""
    labels = np.repeat(np.arange(len(images_per_class)), images_per_class)
    images = np.broadcast_to(np.arange(len(labels), dtype=np.float32)[:, None, None, None], (len(labels), 32, 32, 1))
    return ImageClassDataset(
        images=np.ascontiguousarray(images),
        labels=labels.astype(np.int64),
        class_names=tuple(str(label) for label in range(len(images_per_class))),
        sources=tuple(str(index) for index in range(len(labels))),
    )


def test_counting_label_equals_distinct_classes():
    dataset = make_label_dataset([5] * 12)
    images, target, image_labels = sample_counting_batch(
        np.random.default_rng(0), dataset, batch_size=200, return_image_labels=True
    )
    assert images.shape == (200, 16, 32, 32, 1)
    assert images.dtype == np.float32
    assert target.min() >= 0
    assert target.max() <= 9
    distinct = np.asarray([len(set(row)) for row in image_labels.tolist()])
    np.testing.assert_array_equal(distinct, target + 1)
    # Pixels encode the image index, so the images must carry the returned labels.
    image_index = images[:, :, 0, 0, 0].astype(np.int64)
    np.testing.assert_array_equal(dataset.labels[image_index], image_labels)
    assert set(target.tolist()) == set(range(10))


def test_counting_caps_count_at_class_number():
    dataset = make_label_dataset([3, 2, 40])
    _, target = sample_counting_batch(np.random.default_rng(1), dataset, batch_size=100)
    assert set(target.tolist()) == {0, 1, 2}


def test_counting_deterministic_per_generator():
    dataset = make_label_dataset([4] * 10)
    first = sample_counting_batch(np.random.default_rng(7), dataset, batch_size=8)
    second = sample_counting_batch(np.random.default_rng(7), dataset, batch_size=8)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


def test_counting_on_digits():
    dataset = load_digits_dataset("test")
    images, target, image_labels = sample_counting_batch(
        np.random.default_rng(2), dataset, batch_size=16, return_image_labels=True
    )
    assert images.shape == (16, 16, 32, 32, 1)
    np.testing.assert_array_equal([len(set(row)) for row in image_labels.tolist()], target + 1)
