"""The convolutional image encoder of the class-counting experiment."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eqagg_implicit.models.conv import ConvEncoder, DownsamplingBlock


@pytest.fixture(scope="module")
def encoder():
    # Built once per module: initialising the default encoder compiles many small ops.
    return ConvEncoder(key=jax.random.key(0))


def test_encoder_output_shape(encoder):
    image = jax.random.uniform(jax.random.key(1), (32, 32, 1))

    encoding = encoder(image)

    assert encoding.shape == (256,)
    assert jnp.all(jnp.isfinite(encoding))


def test_encoder_batches_with_vmap(encoder):
    images = jax.random.uniform(jax.random.key(1), (5, 32, 32, 1))

    batched = eqx.filter_jit(eqx.filter_vmap(encoder))(images)

    assert batched.shape == (5, 256)
    np.testing.assert_allclose(batched[3], encoder(images[3]), rtol=1e-5, atol=1e-5)


def test_each_block_halves_spatial_size(encoder):
    h = jnp.zeros((1, 32, 32))
    expected_shapes = [(16, 16, 16), (32, 8, 8), (64, 4, 4)]

    assert len(encoder.blocks) == 3
    for block, expected in zip(encoder.blocks, expected_shapes):
        h = block(h)
        assert h.shape == expected


def test_block_uses_3x3_stride_2_filters():
    block = DownsamplingBlock(4, 8, key=jax.random.key(0))

    assert block.first.kernel_size == (3, 3)
    assert block.first.stride == (2, 2)
    assert block.second.kernel_size == (3, 3)
    assert block.shortcut.stride == (2, 2)


def test_encoder_reads_channel_last_input():
    # A two-channel encoder must treat the last axis as channels: zeroing the first block's
    # weights on input channel 1 must make the output independent of that channel's values.
    encoder = ConvEncoder(image_size=16, in_channels=2, channels=(4, 8), output_size=3, key=jax.random.key(0))
    first_block = encoder.blocks[0]
    encoder = eqx.tree_at(lambda e: e.blocks[0].first.weight, encoder, first_block.first.weight.at[:, 1].set(0))
    encoder = eqx.tree_at(lambda e: e.blocks[0].shortcut.weight, encoder, first_block.shortcut.weight.at[:, 1].set(0))
    base = jax.random.uniform(jax.random.key(1), (16, 16, 2))
    changed = base.at[..., 1].set(jax.random.uniform(jax.random.key(2), (16, 16)))

    np.testing.assert_allclose(encoder(base), encoder(changed), rtol=1e-6)
    assert not jnp.allclose(encoder(base), encoder(base.at[..., 0].add(1.0)))


def test_encoder_gradient_is_finite(encoder):
    image = jax.random.uniform(jax.random.key(1), (32, 32, 1))

    grads = eqx.filter_jit(eqx.filter_grad(lambda e: jnp.sum(e(image) ** 2)))(encoder)

    leaves = jax.tree.leaves(eqx.filter(grads, eqx.is_inexact_array))
    assert leaves
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in leaves)
    assert any(bool(jnp.any(leaf != 0)) for leaf in leaves)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"image_size": 30}, "multiple of 8"),
        ({"channels": ()}, "non-empty"),
        ({"output_size": 0}, "positive"),
    ],
)
def test_encoder_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ConvEncoder(**kwargs, key=jax.random.key(0))


def test_encoder_rejects_channel_first_image(encoder):

    with pytest.raises(ValueError, match="channel-last"):
        encoder(jnp.zeros((1, 32, 32)))
