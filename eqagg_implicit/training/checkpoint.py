"""Checkpoints that survive a crash: one file, replaced atomically.

A checkpoint file is the magic line `EQAGG-CHECKPOINT 1`, an 8-byte big-endian length, a
JSON header of that length, and the pytree leaves as written by
`equinox.tree_serialise_leaves`. The header stores the metadata (step, metrics so far, ...)
and the SHA-256 digest and length of the leaves, so a truncated or damaged file is detected
on load. The file is first written under a temporary name in the same folder and flushed
to disk with `fsync`. Then `os.replace` renames it over the old checkpoint, so a reader
sees either the old checkpoint or the new one, never a partial file.
"""

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import numpy as np
from jaxtyping import PyTree

MAGIC = b"EQAGG-CHECKPOINT 1\n"
_LENGTH_BYTES = 8


class CheckpointError(ValueError):
    """A checkpoint file that is missing, damaged, or does not match the run."""


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old content or the new, never a mix.

    **Arguments:**

    - `path`: the destination file; its folder must exist.
    - `data`: the new content.

    **Returns:** nothing.
    """
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise

    # Persist the rename itself: without syncing the folder, a power loss can undo it.
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def to_host(tree: PyTree) -> PyTree:
    """Copy every JAX array of `tree` to a numpy array; replicated global arrays give one replica."""

    def copy(leaf):
        if isinstance(leaf, jax.Array):
            if leaf.is_fully_addressable:
                return np.asarray(leaf)
            return np.asarray(leaf.addressable_data(0))
        return leaf

    return jax.tree.map(copy, tree)


def save_checkpoint(path: str | os.PathLike, tree: PyTree, metadata: dict[str, Any]) -> None:
    """Write `tree` and `metadata` to one checkpoint file, atomically.

    **Arguments:**

    - `path`: the checkpoint file.
    - `tree`: a pytree of arrays, such as (model, model_state, optimiser_state). Arrays
      replicated across devices are saved once.
    - `metadata`: JSON-serialisable values stored next to the arrays.

    **Returns:** nothing.
    """
    leaves = io.BytesIO()
    eqx.tree_serialise_leaves(leaves, to_host(tree))
    payload = leaves.getvalue()

    header = {
        "metadata": metadata,
        "payload_bytes": len(payload),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
    }
    header_bytes = json.dumps(header).encode()
    data = MAGIC + len(header_bytes).to_bytes(_LENGTH_BYTES, "big") + header_bytes + payload
    atomic_write_bytes(path, data)


def _read(path: Path) -> tuple[dict[str, Any], bytes]:
    if not path.is_file():
        raise CheckpointError(f"Checkpoint not found: {path}.")
    data = path.read_bytes()

    if not data.startswith(MAGIC):
        raise CheckpointError(
            f"{path} is not an eqagg checkpoint (missing the {MAGIC.strip().decode()!r} header). "
            "Delete it or start a fresh run without --resume."
        )
    start = len(MAGIC)
    header_length = int.from_bytes(data[start : start + _LENGTH_BYTES], "big")
    header_end = start + _LENGTH_BYTES + header_length
    try:
        header = json.loads(data[start + _LENGTH_BYTES : header_end])
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"Checkpoint {path} has a corrupt header ({error}). Delete it or start without --resume.") from None

    payload = data[header_end:]
    if len(payload) != header["payload_bytes"] or hashlib.sha256(payload).hexdigest() != header["payload_sha256"]:
        raise CheckpointError(
            f"Checkpoint {path} is corrupt: its arrays do not match the stored length and SHA-256 digest. "
            "Delete it or start without --resume."
        )
    return header["metadata"], payload


def read_checkpoint_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Return the metadata of a checkpoint after verifying the file, without building any arrays."""
    metadata, _ = _read(Path(path))
    return metadata


def load_checkpoint(path: str | os.PathLike, like: PyTree) -> tuple[PyTree, dict[str, Any]]:
    """Read a checkpoint written by `save_checkpoint`.

    **Arguments:**

    - `path`: the checkpoint file.
    - `like`: a pytree with the structure, shapes and dtypes of the saved one, such as a
      freshly initialised (model, model_state, optimiser_state).

    **Returns:** `(tree, metadata)`, with the arrays of `tree` as numpy arrays.
    """
    path = Path(path)
    metadata, payload = _read(path)
    try:
        tree = eqx.tree_deserialise_leaves(io.BytesIO(payload), to_host(like))
    except (RuntimeError, ValueError, EOFError) as error:
        raise CheckpointError(
            f"Checkpoint {path} does not fit the model being trained ({error}). "
            "Resume with the same task options, or start without --resume."
        ) from None
    return tree, metadata
