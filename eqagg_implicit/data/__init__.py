"""Data for the three experiments: median estimation, class counting and molecules.

Every loader reads local files or data shipped inside an installed package;
nothing is downloaded.
"""

from eqagg_implicit.data.counting import sample_counting_batch
from eqagg_implicit.data.median import MEDIAN_DISTRIBUTIONS, sample_median_batch
from eqagg_implicit.data.molecules import *  # noqa: F403 (the molecules package lists its names in __all__)
from eqagg_implicit.data.molecules import __all__ as _molecules_all
from eqagg_implicit.data.omniglot import ImageClassDataset, load_digits_dataset, load_omniglot

__all__ = [
    "MEDIAN_DISTRIBUTIONS",
    "ImageClassDataset",
    "load_digits_dataset",
    "load_omniglot",
    "sample_counting_batch",
    "sample_median_batch",
    *_molecules_all,
]
