"""Eager input checks shared by every pooling layer.

Each check runs at trace time on shapes and dtypes, and on values only when the input is
concrete (not traced under `jit`, `vmap` or `grad`). Traced inputs with NaN or inf are reported
per set through the solution record instead (see `SolveResult`).
"""

import jax.numpy as jnp
import numpy as np

from ._segments import is_concrete


def check_set(x, mask, name: str = "x") -> None:
    """Raise a `ValueError` if `x` is not one set of shape (N, d) with a matching mask."""
    if not hasattr(x, "shape"):
        raise ValueError(f"`{name}` must be an array of shape (N, d), got {type(x).__name__}.")
    if x.ndim != 2:
        hint = " For a batch of sets use `jax.vmap`, or `segment_ids`." if x.ndim == 3 else ""
        hint += " For a set of scalars add a trailing axis: x[:, None]." if x.ndim == 1 else ""
        raise ValueError(f"`{name}` must have shape (N, d) for one set, got shape {x.shape}.{hint}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"`{name}` must be a floating-point array, got dtype {x.dtype}. Cast it with x.astype(jnp.float32).")
    if mask is not None:
        if jnp.shape(mask) != (x.shape[0],):
            raise ValueError(
                f"`mask` must have shape ({x.shape[0]},), one flag per row of `{name}`, got shape {jnp.shape(mask)}."
            )
        if jnp.result_type(mask) != jnp.bool_:
            raise ValueError(f"`mask` must be boolean (True for real elements), got dtype {jnp.result_type(mask)}.")
    check_finite(x, mask, name)


def check_finite(x, mask=None, name: str = "x") -> None:
    """Raise a `ValueError` naming the first non-finite element of a concrete `x`."""
    if not (is_concrete(x) and (mask is None or is_concrete(mask))):
        return
    values = np.asarray(x)
    bad = ~np.isfinite(values)
    if mask is not None:
        bad &= np.asarray(mask).reshape((-1,) + (1,) * (values.ndim - 1))
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"`{name}` contains NaN or inf (first at index {index}: {values[index]}). "
            "Remove or mask those elements before pooling."
        )


def check_feature_size(x, expected: int, name: str = "x") -> None:
    """Raise a `ValueError` if the last axis of `x` is not `expected`."""
    if x.shape[-1] != expected:
        raise ValueError(
            f"`{name}` has {x.shape[-1]} features per element but the layer was built for {expected}. "
            "Rebuild the layer with the matching input size."
        )
