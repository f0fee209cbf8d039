"""Tests of the GIN and GCN graph networks on small hand-built molecular graphs."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jraph
import numpy as np
import pytest

from eqagg_implicit import EquilibriumAggregation, GradientDescent, SumOfSquaresResNetPotential
from eqagg_implicit.graphs import GCN, GIN, AtomEncoder, MaskedBatchNorm
from eqagg_implicit.pooling import AttentionPooling, MaxPooling, MeanPooling, PNAPooling, SumPooling

ATOM_VOCAB_SIZES = [119, 5, 12, 12, 10, 6, 6, 2, 2]
BOND_VOCAB_SIZES = [5, 6, 2]
EMBEDDING_SIZE = 8
NUM_TASKS = 3
BUDGET = dict(n_node=24, n_edge=40, n_graph=5)
MODELS = {"gin": GIN, "gcn": GCN}


def molecule(bonds: list[tuple[int, int]], num_atoms: int, seed: int) -> jraph.GraphsTuple:
    """A molecular graph with random in-vocabulary features and one edge per bond direction."""
    rng = np.random.default_rng(seed)
    atoms = np.stack([rng.integers(0, size, num_atoms) for size in ATOM_VOCAB_SIZES], axis=1)
    bond_features = np.stack([rng.integers(0, size, len(bonds)) for size in BOND_VOCAB_SIZES], axis=1)
    first, second = np.array(bonds).T
    return jraph.GraphsTuple(
        nodes=atoms.astype(np.int32),
        edges=np.concatenate([bond_features, bond_features]).astype(np.int32),
        senders=np.concatenate([first, second]).astype(np.int32),
        receivers=np.concatenate([second, first]).astype(np.int32),
        n_node=np.array([num_atoms]),
        n_edge=np.array([2 * len(bonds)]),
        globals=None,
    )


MOLECULES = [
    molecule([(0, 1), (1, 2)], 3, seed=0),  # a chain, like propane's carbons
    molecule([(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 0)], 6, seed=1),  # a six-membered ring
    molecule([(0, 1), (0, 2), (0, 3), (0, 4)], 5, seed=2),  # a star, like methane with explicit hydrogens
    molecule([(0, 1)], 2, seed=3),
]


def build(cls, **kwargs):
    options = dict(embedding_size=EMBEDDING_SIZE, num_layers=2, key=jax.random.key(0))
    options.update(kwargs)
    return eqx.nn.make_with_state(cls)(NUM_TASKS, ATOM_VOCAB_SIZES, BOND_VOCAB_SIZES, **options)


def small_local_pooling(embedding_size, *, key):
    potential = SumOfSquaresResNetPotential(embedding_size, embedding_size, (16, 4), key=key)
    return EquilibriumAggregation(potential, solver=GradientDescent(max_steps=3))


def pad(graphs: jraph.GraphsTuple) -> tuple[jraph.GraphsTuple, jax.Array]:
    padded = jraph.pad_with_graphs(graphs, **BUDGET)
    return padded, jraph.get_graph_padding_mask(padded)


@eqx.filter_jit
def run(model, graphs, state, graph_mask, key, inference):
    return model(graphs, state, key=key, inference=inference, graph_mask=graph_mask)


def loss_fn(model, graphs, state, graph_mask, key):
    """Return a loss over the real graphs, with the new state and the logits as auxiliary output."""
    logits, new_state = model(graphs, state, key=key, graph_mask=graph_mask)
    per_graph = jnp.sum(jax.nn.softplus(logits) - 0.3 * logits, axis=-1)
    return jnp.sum(jnp.where(graph_mask, per_graph, 0)), (new_state, logits)


@pytest.mark.parametrize("name", MODELS)
def test_train_step_finite(name):
    model, state = build(MODELS[name])
    traces = []

    @eqx.filter_jit
    def train_step(model, graphs, state, graph_mask, key):
        traces.append(1)
        return eqx.filter_value_and_grad(loss_fn, has_aux=True)(model, graphs, state, graph_mask, key)

    # Two different batches padded to the same budget must share one compilation.
    first, first_mask = pad(jraph.batch(MOLECULES[:3]))
    second, second_mask = pad(jraph.batch(MOLECULES[1:]))
    (loss, (state, logits)), grads = train_step(model, first, state, first_mask, jax.random.key(1))
    (second_loss, _), _ = train_step(model, second, state, second_mask, jax.random.key(2))

    assert len(traces) == 1, "a second batch of the same budget was compiled again"
    assert logits.shape == (BUDGET["n_graph"], NUM_TASKS)
    assert np.isfinite(logits).all()
    assert np.isfinite(loss)
    assert np.isfinite(second_loss)
    grad_leaves = jax.tree.leaves(eqx.filter(grads, eqx.is_inexact_array))
    assert all(np.isfinite(leaf).all() for leaf in grad_leaves)
    assert np.abs(grads.head.weight).max() > 0
    assert np.abs(grads.atom_encoder.tables[0]).max() > 0, "the gradient does not reach the atom encoder"


@pytest.mark.parametrize(("name", "virtual_node"), [("gin", True), ("gcn", False)], ids=["gin_virtual_node", "gcn"])
def test_training_padding_invariance(name, virtual_node):
    # Dropout is off, so only batch norm couples the graphs, and its statistics skip padding.
    model, state = build(MODELS[name], dropout_rate=0.0, virtual_node=virtual_node)
    batch = jraph.batch(MOLECULES[:3])
    graphs, graph_mask = pad(batch)

    unpadded_logits, unpadded_state = run(model, batch, state, None, None, False)
    padded_logits, padded_state = run(model, graphs, state, graph_mask, None, False)

    np.testing.assert_allclose(padded_logits[:3], unpadded_logits, rtol=1e-4, atol=1e-5)
    for padded_leaf, unpadded_leaf in zip(jax.tree.leaves(padded_state), jax.tree.leaves(unpadded_state)):
        np.testing.assert_allclose(padded_leaf, unpadded_leaf, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_inference_graph_independence(name):
    model, state = build(MODELS[name], virtual_node=True)
    first, first_mask = pad(jraph.batch([MOLECULES[0], MOLECULES[1]]))
    second, second_mask = pad(jraph.batch([MOLECULES[3], MOLECULES[2], MOLECULES[1]]))

    first_logits, _ = run(model, first, state, first_mask, None, True)
    second_logits, _ = run(model, second, state, second_mask, None, True)

    np.testing.assert_allclose(first_logits[1], second_logits[2], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_node_order_invariance(name):
    model, state = build(MODELS[name], dropout_rate=0.0, readout=AttentionPooling(EMBEDDING_SIZE, 8, key=jax.random.key(5)))
    batch = jraph.batch(MOLECULES)

    # Reverse the node order of the whole batch. Every graph keeps its nodes, but the graphs come
    # in reverse order and so do the nodes inside each one, and the edges are renumbered to match.
    num_nodes = batch.nodes.shape[0]
    new_position = num_nodes - 1 - np.arange(num_nodes)
    permuted = batch._replace(
        nodes=batch.nodes[::-1],
        senders=new_position[batch.senders][::-1],
        receivers=new_position[batch.receivers][::-1],
        edges=batch.edges[::-1],
        n_node=batch.n_node[::-1],
        n_edge=batch.n_edge[::-1],
    )

    logits, _ = run(model, batch, state, None, None, False)
    permuted_logits, _ = run(model, permuted, state, None, None, False)

    np.testing.assert_allclose(permuted_logits[::-1], logits, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "readout",
    [
        SumPooling(),
        MeanPooling(),
        MaxPooling(),
        AttentionPooling(EMBEDDING_SIZE, 4, 2, key=jax.random.key(1)),
        PNAPooling.from_set_sizes(EMBEDDING_SIZE, 6, [3, 6, 5, 2], key=jax.random.key(2)),
        EquilibriumAggregation(
            SumOfSquaresResNetPotential(EMBEDDING_SIZE, 5, (16, 4), key=jax.random.key(3)),
            solver=GradientDescent(max_steps=3),
        ),
    ],
    ids=["sum", "mean", "max", "attention", "pna", "equilibrium"],
)
def test_gin_with_every_readout(readout):
    model, state = build(GIN, readout=readout, max_nodes_per_graph=6)
    graphs, graph_mask = pad(jraph.batch(MOLECULES))

    logits, _ = run(model, graphs, state, graph_mask, jax.random.key(1), False)

    assert logits.shape == (BUDGET["n_graph"], NUM_TASKS)
    assert np.isfinite(logits).all()


@pytest.mark.parametrize("name", MODELS)
def test_equilibrium_local_aggregation(name):
    model, state = build(
        MODELS[name],
        dropout_rate=0.0,
        local_aggregation="equilibrium",
        local_pooling=small_local_pooling,
        max_in_degree=4,
    )
    # Both batches share one padded budget, so one compilation serves both calls.
    first, first_mask = pad(jraph.batch(MOLECULES[:3]))
    second, second_mask = pad(jraph.batch([MOLECULES[2], MOLECULES[0]]))

    first_logits, _ = run(model, first, state, first_mask, None, True)
    second_logits, _ = run(model, second, state, second_mask, None, True)

    assert isinstance(model.convs[0].aggregation.aggregation, EquilibriumAggregation)
    assert np.isfinite(first_logits).all()
    np.testing.assert_allclose(second_logits[0], first_logits[2], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(second_logits[1], first_logits[0], rtol=1e-5, atol=1e-5)


def test_equilibrium_local_aggregation_gradient():
    model, state = build(GIN, local_aggregation="equilibrium", local_pooling=small_local_pooling, max_in_degree=4)
    graphs, graph_mask = pad(jraph.batch(MOLECULES[:3]))

    grad_fn = eqx.filter_jit(eqx.filter_value_and_grad(loss_fn, has_aux=True))
    (loss, _), grads = grad_fn(model, graphs, state, graph_mask, jax.random.key(1))

    assert np.isfinite(loss)
    potential_grad = jax.tree.leaves(grads.convs[0].aggregation.aggregation.potential)
    assert all(np.isfinite(leaf).all() for leaf in potential_grad)
    assert max(np.abs(leaf).max() for leaf in potential_grad) > 0, "no gradient reaches the local potential"


def test_local_aggregation_rejects_high_in_degree():
    model, state = build(GIN, local_aggregation="equilibrium", local_pooling=small_local_pooling, max_in_degree=3)
    batch = jraph.batch(MOLECULES[2:3])  # the star's centre has 4 incoming edges

    with pytest.raises(ValueError, match="node 0 has 4 elements"):
        model(batch, state, inference=True)


def test_gin_gradient_matches_finite_differences(x64):
    readout = AttentionPooling(EMBEDDING_SIZE, 4, 2, key=jax.random.key(7))
    model, state = build(GIN, dropout_rate=0.0, virtual_node=True, readout=readout)
    model, state = jax.tree.map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, (model, state))
    graphs, graph_mask = pad(jraph.batch(MOLECULES[:3]))

    # Perturb one readout parameter and one first-layer parameter.
    parameters = {
        "readout seed": lambda m: m.readout.pooling.seeds,
        "first layer bond embedding": lambda m: m.convs[0].bond_encoder.tables[0],
    }

    # One compiled function serves the gradient and the perturbed losses. The state is an
    # argument, not a closure, because equinox rejects a state object that is used twice.
    @eqx.filter_jit
    @eqx.filter_value_and_grad
    def loss(model, state):
        return loss_fn(model, graphs, state, graph_mask, None)[0]

    _, grads = loss(model, state)
    step = 1e-6
    for label, where in parameters.items():
        analytic = where(grads)[0, 1]
        plus = eqx.tree_at(where, model, where(model).at[0, 1].add(step))
        minus = eqx.tree_at(where, model, where(model).at[0, 1].add(-step))
        numeric = (loss(plus, state)[0] - loss(minus, state)[0]) / (2 * step)
        assert abs(analytic) > 1e-8, f"{label}: the gradient is zero, so the check is vacuous"
        np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-9, err_msg=label)


def test_training_without_key_raises():
    model, state = build(GIN)

    with pytest.raises(ValueError, match="PRNG `key`"):
        model(jraph.batch(MOLECULES[:1]), state)


def test_constructor_rejects_bad_options():
    with pytest.raises(ValueError, match="num_layers"):
        build(GIN, num_layers=1)
    with pytest.raises(ValueError, match="local_aggregation"):
        build(GIN, local_aggregation="mean")
    with pytest.raises(ValueError, match="local_pooling"):
        build(GIN, local_pooling=small_local_pooling)


def test_atom_encoder_sums_tables():
    encoder = AtomEncoder([3, 4], 5, key=jax.random.key(0))
    features = jnp.array([[2, 0], [1, 3]])

    embedded = encoder(features)

    np.testing.assert_allclose(embedded[1], encoder.tables[0][1] + encoder.tables[1][3], rtol=1e-6)


def test_atom_encoder_rejects_out_of_vocabulary():
    encoder = AtomEncoder([3, 4], 5, key=jax.random.key(0))

    with pytest.raises(ValueError, match="column 1 has values from 0 to 4"):
        encoder(jnp.array([[2, 0], [1, 4]]))


def test_masked_batch_norm_statistics():
    norm, state = eqx.nn.make_with_state(MaskedBatchNorm)(2, momentum=0.5)
    x = jnp.array([[1.0, 2.0], [3.0, 6.0], [100.0, -100.0]])
    mask = jnp.array([True, True, False])

    normalised, state = norm(x, mask, state)
    running_mean, running_var = state.get(norm.state_index)

    expected = (np.array([[1.0, 2.0], [3.0, 6.0]]) - [2.0, 4.0]) / np.sqrt(np.array([1.0, 4.0]) + norm.eps)
    np.testing.assert_allclose(normalised[:2], expected, rtol=1e-5)
    np.testing.assert_allclose(running_mean, [1.0, 2.0], rtol=1e-6)
    # Half of the old variance 1 plus half of the unbiased batch variance [2, 8].
    np.testing.assert_allclose(running_var, [1.5, 4.5], rtol=1e-6)


def test_masked_batch_norm_inference_uses_running_statistics():
    norm, state = eqx.nn.make_with_state(MaskedBatchNorm)(2)
    x = jnp.array([[1.0, 2.0], [3.0, 6.0]])

    normalised, new_state = norm(x, jnp.ones(2, bool), state, inference=True)

    np.testing.assert_allclose(normalised, x / np.sqrt(1 + norm.eps), rtol=1e-6)
    np.testing.assert_array_equal(new_state.get(norm.state_index)[0], np.zeros(2))
