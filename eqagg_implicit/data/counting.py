"""Sets of images whose target is the number of distinct classes among them."""

from __future__ import annotations

import numpy as np

from eqagg_implicit.data.omniglot import ImageClassDataset

SET_SIZE = 16
MAX_COUNT = 10


def sample_counting_batch(
    rng: np.random.Generator,
    dataset: ImageClassDataset,
    batch_size: int,
    set_size: int = SET_SIZE,
    max_count: int = MAX_COUNT,
    *,
    return_image_labels: bool = False,
) -> tuple[np.ndarray, ...]:
    """Draw sets of images and the number of distinct classes in each set.

    For each set the count is uniform on ``1..min(max_count, num_classes,
    set_size)``. That many classes are drawn without replacement; each appears
    once, and the remaining places are filled with classes drawn uniformly from
    the chosen ones. Each place then gets an image drawn uniformly from its
    class, and an image repeats within a set only when its class has fewer
    images than places.

    Returns ``(images, target)``: float32 ``(batch_size, set_size, H, W, 1)``
    and int64 ``(batch_size,)`` holding ``count - 1``, a class index in
    ``0..max_count - 1``. With ``return_image_labels`` a third int64 array
    ``(batch_size, set_size)`` contains the class label of every image. The output
    depends only on the generator's state and the dataset.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if set_size < 1 or max_count < 1:
        raise ValueError(f"set_size and max_count must be at least 1, got {set_size} and {max_count}")

    class_members = [np.flatnonzero(dataset.labels == label) for label in range(dataset.num_classes)]
    populated = np.asarray([label for label, members in enumerate(class_members) if len(members)])
    if len(populated) == 0:
        raise ValueError("dataset contains no images")
    highest_count = min(max_count, len(populated), set_size)

    image_indices = np.empty((batch_size, set_size), dtype=np.int64)
    counts = rng.integers(1, highest_count + 1, size=batch_size)
    for row, count in enumerate(counts):
        chosen = rng.choice(populated, size=count, replace=False)
        extra = rng.choice(chosen, size=set_size - count, replace=True)
        place_classes = rng.permutation(np.concatenate([chosen, extra]))
        for label in chosen:
            places = np.flatnonzero(place_classes == label)
            members = class_members[label]
            replace = len(members) < len(places)
            image_indices[row, places] = rng.choice(members, size=len(places), replace=replace)

    images = dataset.images[image_indices]
    target = (counts - 1).astype(np.int64)
    if return_image_labels:
        return images, target, dataset.labels[image_indices]
    return images, target
