"""Data-parallel training on 8 simulated CPU devices gives the parameters of 1-device training.

The device count of the CPU backend is fixed when JAX starts, so the runs happen in a
subprocess started with XLA_FLAGS=--xla_force_host_platform_device_count=8.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    r'''
    import json, sys, tempfile

    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import jraph
    import numpy as np

    from eqagg_implicit.graphs import GCNConv, node_graph_ids
    from eqagg_implicit.models import ResNetMLP
    from eqagg_implicit.training import AbstractTask, TaskOptions, TrainConfig, build_pooling, load_checkpoint, train
    from experiments.median import MedianTask

    NODES_PER_BATCH, EDGES_PER_BATCH, GRAPHS_PER_BATCH = 16, 24, 4


    class TinyGraphModel(eqx.Module):
        embed: eqx.nn.Linear
        conv: GCNConv
        readout: eqx.Module
        head: ResNetMLP

        def __call__(self, graphs):
            h = jax.vmap(self.embed)(graphs.nodes)
            edge_mask = jnp.arange(graphs.senders.shape[0]) < jnp.sum(graphs.n_edge[:-1])
            h, _ = self.conv(h, graphs, None, edge_mask, None, inference=False)
            graph_ids = node_graph_ids(graphs)
            pooled = self.readout(h, segment_ids=graph_ids, num_segments=GRAPHS_PER_BATCH, max_segment_size=8)
            return jax.vmap(self.head)(pooled)[:, 0]


    class TinyGraphTask(AbstractTask):
        """Regress each graph's node count; each batch is a stack of padded sub-batches."""

        name = "tiny-graphs"
        metric_name = "mse"
        higher_is_better = False

        def init(self, key):
            keys = jax.random.split(key, 4)
            size = 4
            readout = build_pooling(self.options, size, size, key=keys[2], potential_sizes=(8, 1))
            model = TinyGraphModel(
                eqx.nn.Linear(2, size, key=keys[0]),
                GCNConv(size, (3,), key=keys[1]),
                readout,
                ResNetMLP(size, (8, 1), key=keys[3]),
            )
            return model, None

        def _sub_batch(self, rng):
            graphs = []
            for _ in range(GRAPHS_PER_BATCH - 1):
                num_nodes = int(rng.integers(2, 5))
                senders = np.arange(num_nodes - 1, dtype=np.int32)
                graphs.append(
                    jraph.GraphsTuple(
                        nodes=rng.normal(size=(num_nodes, 2)).astype(np.float32),
                        edges=rng.integers(0, 3, size=(num_nodes - 1, 1)).astype(np.int32),
                        senders=senders, receivers=senders + 1,
                        n_node=np.array([num_nodes]), n_edge=np.array([num_nodes - 1]), globals=None,
                    )
                )
            batch = jraph.pad_with_graphs(jraph.batch_np(graphs), NODES_PER_BATCH, EDGES_PER_BATCH, GRAPHS_PER_BATCH)
            targets = batch.n_node.astype(np.float32)
            return {"graphs": batch, "targets": targets, "mask": np.arange(GRAPHS_PER_BATCH) < GRAPHS_PER_BATCH - 1}

        def train_batch(self, seed, step, batch_size):
            rng = np.random.default_rng([seed, step])
            subs = [self._sub_batch(rng) for _ in range(self.options.sub_batches)]
            return jax.tree.map(lambda *leaves: np.stack(leaves), *subs)

        def loss(self, model, model_state, batch, key):
            predictions = jax.vmap(model)(batch["graphs"])
            errors = jnp.where(batch["mask"], (predictions - batch["targets"]) ** 2, 0.0)
            mse = jnp.sum(errors) / jnp.sum(batch["mask"])
            return mse, ({"mse": mse}, model_state)

        def evaluate(self, model, model_state, split):
            batch = self.train_batch(12345, 0, 0)
            return {"mse": float(self.loss(model, model_state, batch, None)[0])}


    def parameters(task, path):
        model, state = task.init(jax.random.key(0))
        (model, _), _ = load_checkpoint(f"{path}/checkpoint.ckpt", (model, state))
        return jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))


    def max_difference(task, devices_a, devices_b, batch_size):
        paths = []
        for devices in (devices_a, devices_b):
            path = tempfile.mkdtemp()
            config = TrainConfig(path, steps=3, batch_size=batch_size, eval_every=3, devices=devices,
                                 progress=False, plot=False)
            train(task, config)
            paths.append(path)
        pairs = zip(parameters(task, paths[0]), parameters(task, paths[1]), strict=True)
        return max(float(np.max(np.abs(a - b) / (1e-3 + np.abs(b)))) for a, b in pairs)


    results = {"device_count": jax.device_count()}
    median = MedianTask(TaskOptions(latent_size=4, hidden_size=8, eval_size=16, learning_rate=1e-2))
    results["median"] = max_difference(median, 8, 1, batch_size=16)

    graph_options = TaskOptions(sub_batches=8, learning_rate=1e-2, aggregation="equilibrium", solver_steps=3)
    results["graphs"] = max_difference(TinyGraphTask(graph_options), 8, 1, batch_size=8)

    try:
        train(median, TrainConfig(tempfile.mkdtemp(), steps=1, batch_size=12, devices=8, progress=False, plot=False))
    except ValueError as error:
        results["indivisible_error"] = str(error)
    print("RESULTS " + json.dumps(results))
    '''
)


@pytest.fixture(scope="module")
def results():
    environment = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
    }
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, env=environment, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    line = next(line for line in completed.stdout.splitlines() if line.startswith("RESULTS "))
    return json.loads(line.removeprefix("RESULTS "))


def test_parallel_uses_eight_devices(results):
    assert results["device_count"] == 8


def test_parallel_median_matches_one_device(results):
    # Relative difference of every parameter after 3 Adam steps; float32 sums in another order.
    assert results["median"] < 1e-4


def test_parallel_graphs_match_one_device(results):
    assert results["graphs"] < 1e-4


def test_parallel_rejects_indivisible_batch(results):
    assert "size 12, which does not divide evenly over 8 devices" in results["indivisible_error"]
