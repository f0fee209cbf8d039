"""Embeddings of integer node and edge features, as in OGB's `AtomEncoder` and `BondEncoder`."""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .._segments import is_concrete


class CategoricalEmbedding(eqx.Module):
    """Embed rows of categorical features by summing one learned vector per feature.

    Feature k of a row is an integer in [0, vocab_sizes[k]) that selects a row of the k-th
    embedding table; the output is the sum over k of the selected rows. Tables start
    Xavier-uniform, as OGB's encoders do.

    **Arguments:**

    - `vocab_sizes`: the number of categories of every feature.
    - `embedding_size`: the size of the output vectors.
    - `key`: a JAX PRNG key for the initial tables.
    """

    tables: tuple[Float[Array, "vocab size"], ...]
    vocab_sizes: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, vocab_sizes: Sequence[int], embedding_size: int, *, key: PRNGKeyArray):
        vocab_sizes = tuple(int(v) for v in vocab_sizes)
        if not vocab_sizes or min(vocab_sizes) <= 0:
            raise ValueError(f"`vocab_sizes` must be a non-empty list of positive ints, got {list(vocab_sizes)}.")
        if embedding_size <= 0:
            raise ValueError(f"`embedding_size` must be positive, got {embedding_size!r}.")
        initializer = jax.nn.initializers.xavier_uniform()
        keys = jax.random.split(key, len(vocab_sizes))
        self.tables = tuple(initializer(k, (v, embedding_size)) for k, v in zip(keys, vocab_sizes))
        self.vocab_sizes = vocab_sizes

    def __call__(self, features: Int[Array, "n num_features"]) -> Float[Array, "n size"]:
        """Embed every row of `features`.

        Out-of-range categories raise a `ValueError` when `features` is concrete. Under `jit`
        they cannot be checked, and JAX clamps the index to the nearest valid row.
        """
        if features.ndim != 2 or features.shape[1] != len(self.vocab_sizes):
            raise ValueError(
                f"`features` must have shape (n, {len(self.vocab_sizes)}), one column per vocabulary, "
                f"got shape {features.shape}."
            )
        if not jnp.issubdtype(features.dtype, jnp.integer):
            raise ValueError(f"`features` must be integer category indices, got dtype {features.dtype}.")
        if is_concrete(features) and features.shape[0]:
            values = np.asarray(features)
            low, high = values.min(axis=0), values.max(axis=0)
            for column, vocab_size in enumerate(self.vocab_sizes):
                if low[column] < 0 or high[column] >= vocab_size:
                    raise ValueError(
                        f"feature column {column} has values from {int(low[column])} to {int(high[column])}, "
                        f"outside its vocabulary [0, {vocab_size}). Fix the featurisation or the vocabulary sizes."
                    )

        embedded = self.tables[0][features[:, 0]]
        for column in range(1, len(self.tables)):
            embedded = embedded + self.tables[column][features[:, column]]
        return embedded


class AtomEncoder(CategoricalEmbedding):
    """A `CategoricalEmbedding` of atom features (OGB molecules have 9, vocabularies [119, 5, 12, 12, 10, 6, 6, 2, 2])."""


class BondEncoder(CategoricalEmbedding):
    """A `CategoricalEmbedding` of bond features (OGB molecules have 3, vocabularies [5, 6, 2])."""
