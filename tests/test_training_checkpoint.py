import os

import jax.numpy as jnp
import numpy as np
import pytest

from eqagg_implicit.training.checkpoint import (
    CheckpointError,
    atomic_write_bytes,
    load_checkpoint,
    read_checkpoint_metadata,
    save_checkpoint,
)


def _tree():
    return {"weights": jnp.arange(6.0).reshape(2, 3), "state": (jnp.array(3, jnp.int32), None)}


def test_checkpoint_round_trip(tmp_path):
    path = tmp_path / "run.ckpt"
    save_checkpoint(path, _tree(), {"step": 7, "history": [{"step": 5, "test/mse": 0.25}]})

    tree, metadata = load_checkpoint(path, _tree())

    np.testing.assert_array_equal(tree["weights"], np.arange(6.0).reshape(2, 3))
    assert int(tree["state"][0]) == 3
    assert tree["state"][1] is None
    assert metadata == {"step": 7, "history": [{"step": 5, "test/mse": 0.25}]}
    assert read_checkpoint_metadata(path)["step"] == 7


def test_checkpoint_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "run.ckpt"
    for step in range(3):
        save_checkpoint(path, _tree(), {"step": step})

    assert os.listdir(tmp_path) == ["run.ckpt"]
    assert read_checkpoint_metadata(path)["step"] == 2


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    path = tmp_path / "data.txt"
    atomic_write_bytes(path, b"old")

    with pytest.raises(TypeError):
        atomic_write_bytes(path, "not bytes")

    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["data.txt"]


def test_checkpoint_detects_flipped_byte(tmp_path):
    path = tmp_path / "run.ckpt"
    save_checkpoint(path, _tree(), {"step": 1})
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))

    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path, _tree())


def test_checkpoint_detects_truncation(tmp_path):
    path = tmp_path / "run.ckpt"
    save_checkpoint(path, _tree(), {"step": 1})
    path.write_bytes(path.read_bytes()[:-10])

    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path, _tree())


def test_checkpoint_rejects_foreign_file(tmp_path):
    path = tmp_path / "run.ckpt"
    path.write_bytes(b"PK\x03\x04 a zip file")

    with pytest.raises(CheckpointError, match="not an eqagg checkpoint"):
        read_checkpoint_metadata(path)


def test_checkpoint_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint_metadata(tmp_path / "absent.ckpt")


def test_checkpoint_rejects_other_shapes(tmp_path):
    path = tmp_path / "run.ckpt"
    save_checkpoint(path, _tree(), {"step": 1})
    other = {"weights": jnp.zeros((3, 3)), "state": (jnp.array(0, jnp.int32), None)}

    with pytest.raises(CheckpointError, match="does not fit"):
        load_checkpoint(path, other)
