"""Molecular property prediction: GIN or GCN with a choice of graph readout.

Following Equilibrium Aggregation (Bartunov, Fuchs and Lillicrap, UAI 2022), a GIN or GCN of
5 layers and 300 dimensions (OGB's reference models) embeds the atoms of each molecule. Only
the global readout changes: sum, 4-head attention, PNA or equilibrium aggregation with
a sum-of-squares potential of widths [600, 300, 32] and 15 gradient-descent steps (pass
`--solver-steps 15`; the command-line default is 5). The "equilibrium local + global" model
also replaces every layer's neighbour sum by equilibrium aggregation (`--option local=equilibrium`).
The loss is the binary cross-entropy averaged over the labelled (graph, task) pairs, so
missing labels are ignored. The paper trains on ogbg-molpcba (128 tasks, metric: average
precision over tasks) with batches of up to 8 graphs and 1024 nodes.

Data: by default the merged BBBP, BACE and ClinTox tasks of `eqagg_implicit.data` (3 tasks,
scaffold split, metric: ROC-AUC over tasks as OGB reports for those sets), which needs no
download. With `--data-dir`, an extracted OGB folder such as `ogbg_molpcba/` with `raw/` and
`split/scaffold/` (metric: average precision).

A batch is a stack of `sub_batches` padded graph batches (`--sub-batches`, default 1), each
with room for batch_size / sub_batches graphs and the node and edge budget. The loss merges
the stack into one graph batch, so batch normalisation sees every graph of the device's share.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jraph
import numpy as np
import optax
from jaxtyping import Array, Bool, Float, Scalar

from eqagg_implicit import EquilibriumAggregation
from eqagg_implicit.data.molecules import (
    BatchBudget,
    GraphBatch,
    MoleculeDataset,
    atom_feature_dims,
    bond_feature_dims,
    evaluate as evaluate_metric,
    iterate_batches,
    load_default_molecule_dataset,
    load_ogb_graph_dataset,
    pad_graph_batch,
)
from eqagg_implicit.graphs import GraphNetwork, node_graph_ids, padding_masks
from eqagg_implicit.pooling import average_log_size
from eqagg_implicit.training import AbstractTask, TaskOptions, build_pooling

from .counting import build_sum_of_squares_equilibrium

DEFAULT_EMBEDDING_SIZE = 300
DEFAULT_NUM_LAYERS = 5
DEFAULT_MAX_NODES = 1024
DEFAULT_DROPOUT = 0.5
# Graphs per evaluation batch: more than a training sub-batch, so evaluation takes fewer calls.
DEFAULT_EVAL_GRAPHS = 32
# The equilibrium potential's last width; the first two are 2 D and D (600 and 300 for D = 300).
POTENTIAL_OUTPUT_WIDTH = 32

_EXTRA_OPTIONS = {
    "gnn": "gin or gcn (default gin)",
    "layers": f"number of graph convolutions (default {DEFAULT_NUM_LAYERS})",
    "local": "sum or equilibrium neighbour aggregation (default sum)",
    "dropout": f"dropout rate after every layer (default {DEFAULT_DROPOUT})",
    "max_nodes": f"nodes per padded sub-batch, padding included (default {DEFAULT_MAX_NODES})",
    "max_edges": "directed edges per padded sub-batch (default 3 * max_nodes)",
}
_SPLIT_NAMES = {"validation": "valid", "test": "test"}


def masked_binary_cross_entropy(
    logits: Float[Array, "g t"], labels: Float[Array, "g t"], label_mask: Bool[Array, "g t"] | None = None
) -> Scalar:
    """Compute the binary cross-entropy averaged over the labelled (graph, task) pairs.

    A pair counts only where `label_mask` is True and the label is not NaN, so both the
    padded batches of the data package (0 with a False mask) and raw labels with NaN for a
    missing value work. A batch without any label gives 0, with zero gradients.

    **Arguments:**

    - `logits`: the model's logits, one row per graph and one column per task.
    - `labels`: 0 or 1, or NaN where the label is missing.
    - `label_mask`: optional; True where the label exists. `None` uses `~isnan(labels)` alone.

    **Returns:** the mean loss as a scalar.
    """
    labelled = ~jnp.isnan(labels)
    if label_mask is not None:
        labelled = labelled & label_mask

    # Replace missing labels before the loss, so that NaN never enters the forward or backward pass.
    safe_labels = jnp.where(labelled, labels, 0.0)
    losses = optax.sigmoid_binary_cross_entropy(logits, safe_labels)
    total = jnp.sum(jnp.where(labelled, losses, 0.0))
    return total / jnp.maximum(jnp.sum(labelled), 1)


def merge_padded_batches(graphs: jraph.GraphsTuple) -> jraph.GraphsTuple:
    """Merge a stack of S padded graph batches (every leaf with a leading axis S) into one batch.

    Node indices of sub-batch s are shifted by s times the nodes per sub-batch, and the
    graphs, nodes and edges are concatenated in order. Padding graphs stay padding graphs.
    """
    num_stacked, nodes_per_batch = graphs.nodes.shape[:2]
    offsets = (jnp.arange(num_stacked) * nodes_per_batch)[:, None]
    return jraph.GraphsTuple(
        nodes=graphs.nodes.reshape(num_stacked * nodes_per_batch, *graphs.nodes.shape[2:]),
        edges=graphs.edges.reshape(-1, *graphs.edges.shape[2:]),
        senders=(graphs.senders + offsets).reshape(-1),
        receivers=(graphs.receivers + offsets).reshape(-1),
        n_node=graphs.n_node.reshape(-1),
        n_edge=graphs.n_edge.reshape(-1),
        globals=None,
    )


class MoleculeModel(eqx.Module):
    """A graph network whose readout reports equilibrium convergence statistics.

    Call it as `model(graphs, graph_mask, state, key=key, inference=False)`; it returns
    `(logits, statistics, state)`. For an equilibrium readout `statistics` has per-graph
    "residual" (max |dE/dy| at the output) and "aux_loss"; otherwise it is empty.

    **Arguments:**

    - `network`: a `GraphNetwork` (GIN or GCN) with the chosen readout.
    """

    network: GraphNetwork

    def __call__(self, graphs, graph_mask, state, *, key=None, inference=False):
        network = self.network
        h, state = network.node_embeddings(graphs, state, key=key, inference=inference, graph_mask=graph_mask)

        pooling = network.readout.pooling
        statistics: dict[str, Array] = {}
        if isinstance(pooling, EquilibriumAggregation):
            # The same masking as `GraphReadout`: padding nodes get an id outside [0, num_graphs).
            num_graphs = graphs.n_node.shape[0]
            _, node_mask, _ = padding_masks(graphs, graph_mask)
            ids = jnp.where(node_mask, node_graph_ids(graphs), num_graphs)
            solution = pooling.solve(
                h, segment_ids=ids, num_segments=num_graphs, max_segment_size=network.readout.max_nodes_per_graph
            )
            pooled = solution.value
            statistics = {"residual": solution.residual, "aux_loss": solution.aux_loss}
        else:
            pooled = network.readout(graphs, h, graph_mask)

        return jax.vmap(network.head)(pooled), statistics, state


class MoleculeTask(AbstractTask):
    """The molecular property prediction task.

    Options: `aggregation` is the global readout (sum, attention, pna, equilibrium, or mean
    and max). `hidden_size` is the embedding width D (default 300), and `latent_size` is the
    readout's output size (default D, which sum, mean and max require). `eval_size` caps the
    graphs per evaluation split (default: all), `sub_batches` is the number of padded
    sub-batches per step, and `data_dir` is an OGB data set folder. `--option KEY=VALUE` sets gnn, layers, local,
    dropout, max_nodes and max_edges (see `_EXTRA_OPTIONS`).
    """

    name = "molecules"
    metric_name = "rocauc"
    higher_is_better = True
    splits = ("validation", "test")

    def __init__(self, options: TaskOptions):
        super().__init__(options)
        unknown = sorted(set(options.extra) - set(_EXTRA_OPTIONS))
        if unknown:
            choices = "; ".join(f"{key}: {text}" for key, text in _EXTRA_OPTIONS.items())
            raise ValueError(f"The molecules task has no option {unknown[0]!r}; its options are {choices}.")

        self.gnn = options.extra.get("gnn", "gin")
        if self.gnn not in ("gin", "gcn"):
            raise ValueError(f"gnn must be gin or gcn, got {self.gnn!r}.")
        self.local = options.extra.get("local", "sum")
        if self.local not in ("sum", "equilibrium"):
            raise ValueError(f"local must be sum or equilibrium, got {self.local!r}.")
        self.num_layers = _int_option(options.extra, "layers", DEFAULT_NUM_LAYERS, minimum=2)
        self.dropout = _float_option(options.extra, "dropout", DEFAULT_DROPOUT)
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}.")
        max_nodes = _int_option(options.extra, "max_nodes", DEFAULT_MAX_NODES, minimum=2)
        max_edges = _int_option(options.extra, "max_edges", 3 * max_nodes, minimum=0)
        self.budget_nodes, self.budget_edges = max_nodes, max_edges

        self.embedding_size = options.hidden_size or DEFAULT_EMBEDDING_SIZE
        self.readout_size = options.latent_size or self.embedding_size
        # OGB data sets score average precision (molpcba's metric); the default set scores ROC-AUC.
        self.metric_name = "rocauc" if options.data_dir is None else "ap"

        self._dataset: MoleculeDataset | None = None
        self._predict = eqx.filter_jit(_predict)

    @property
    def dataset(self) -> MoleculeDataset:
        """The molecules, loaded on first use: an OGB folder with `data_dir`, else the default set."""
        if self._dataset is None:
            if self.options.data_dir is None:
                self._dataset = load_default_molecule_dataset()
            else:
                self._dataset = load_ogb_graph_dataset(self.options.data_dir, eval_metric="ap")
            if self._dataset.eval_metric != self.metric_name:
                raise ValueError(
                    f"The data set {self._dataset.name} reports {self._dataset.eval_metric}, but the task "
                    f"expected {self.metric_name}."
                )
        return self._dataset

    def budget(self, batch_size: int) -> BatchBudget:
        """Return the padded size of one sub-batch for a global batch of `batch_size` graphs."""
        sub_batches = self.options.sub_batches
        if batch_size % sub_batches != 0:
            raise ValueError(
                f"batch_size={batch_size} must be divisible by sub_batches={sub_batches}, because each "
                "sub-batch holds the same number of graphs."
            )
        return BatchBudget(batch_size // sub_batches, self.budget_nodes, self.budget_edges)

    def _graph_sizes(self) -> tuple[int, int]:
        """Return the largest number of nodes of one graph and of incoming edges of one node."""
        max_nodes = max(graph["num_nodes"] for graph in self.dataset.graphs)
        max_in_degree = 1
        for graph in self.dataset.graphs:
            receivers = np.asarray(graph["edge_index"])[1]
            if receivers.size:
                max_in_degree = max(max_in_degree, int(np.bincount(receivers).max()))
        return max_nodes, max_in_degree

    def init(self, key):
        readout_key, network_key = jax.random.split(key)
        size = self.embedding_size
        potential_sizes = (2 * size, size, POTENTIAL_OUTPUT_WIDTH)
        max_nodes, max_in_degree = self._graph_sizes()

        if self.options.aggregation == "equilibrium":
            readout = build_sum_of_squares_equilibrium(
                self.options, size, self.readout_size, potential_sizes, key=readout_key
            )
        else:
            train_sizes = [self.dataset.graphs[index]["num_nodes"] for index in self.dataset.split["train"]]
            readout = build_pooling(
                self.options, size, self.readout_size, key=readout_key, pna_delta=average_log_size(train_sizes)
            )

        local_pooling = None
        if self.local == "equilibrium":
            def local_pooling(embedding_size, *, key):
                return build_sum_of_squares_equilibrium(
                    self.options, embedding_size, embedding_size, potential_sizes, key=key
                )

        network, state = eqx.nn.make_with_state(GraphNetwork)(
            self.gnn,
            self.dataset.num_tasks,
            atom_feature_dims(),
            bond_feature_dims(),
            readout=readout,
            num_layers=self.num_layers,
            embedding_size=size,
            dropout_rate=self.dropout,
            local_aggregation=self.local,
            local_pooling=local_pooling,
            max_nodes_per_graph=max_nodes,
            max_in_degree=max_in_degree,
            key=network_key,
        )
        return MoleculeModel(network), state

    def train_batch(self, seed, step, batch_size):
        """Draw graphs for every sub-batch at random and pad each one to the budget.

        Each sub-batch draws `budget.max_graphs` training graphs without replacement and keeps,
        in the drawn order, those that still fit the node and edge budget, so a sub-batch can
        hold fewer graphs than `max_graphs` (dynamic batching).
        """
        budget = self.budget(batch_size)
        rng = np.random.default_rng([seed, step])
        train_indices = self.dataset.split["train"]

        sub_batches = []
        for _ in range(self.options.sub_batches):
            drawn = rng.choice(train_indices, size=min(budget.max_graphs, len(train_indices)), replace=False)
            chosen, nodes, edges = [], 0, 0
            for index in drawn:
                graph = self.dataset.graphs[index]
                graph_nodes, graph_edges = graph["num_nodes"], np.shape(graph["edge_index"])[1]
                if budget.fits(len(chosen) + 1, nodes + graph_nodes, edges + graph_edges):
                    chosen.append(index)
                    nodes += graph_nodes
                    edges += graph_edges
            if not chosen:
                raise ValueError(
                    f"No drawn training graph fits the budget of {budget.max_nodes} nodes and {budget.max_edges} "
                    "edges; raise --option max_nodes=... or max_edges=..."
                )
            sub_batches.append(pad_graph_batch(self.dataset.graphs, self.dataset.labels, chosen, budget))

        return _stack_batches(sub_batches)

    def loss(self, model, model_state, batch, key):
        graphs = merge_padded_batches(batch.graphs)
        graph_mask = batch.graph_mask.reshape(-1)
        logits, statistics, model_state = model(graphs, graph_mask, model_state, key=key, inference=False)

        labels = batch.labels.reshape(logits.shape)
        label_mask = batch.label_mask.reshape(logits.shape)
        bce = masked_binary_cross_entropy(logits, labels, label_mask)

        metrics = {"bce": bce}
        loss = bce
        if statistics:
            real = graph_mask.astype(logits.dtype)
            count = jnp.maximum(jnp.sum(real), 1)
            metrics["residual"] = jnp.sum(statistics["residual"] * real) / count
            metrics["aux_loss"] = jnp.sum(statistics["aux_loss"] * real) / count
            loss = loss + self.options.aux_loss_weight * metrics["aux_loss"]
        return loss, (metrics, model_state)

    def evaluate(self, model, model_state, split):
        if split not in self.splits:
            raise ValueError(f"Unknown split {split!r}; the molecules task has {', '.join(self.splits)}.")
        dataset = self.dataset
        indices = dataset.split[_SPLIT_NAMES[split]]
        if self.options.eval_size is not None:
            indices = indices[: self.options.eval_size]
        budget = BatchBudget(DEFAULT_EVAL_GRAPHS, self.budget_nodes, self.budget_edges)

        predictions = np.zeros((len(dataset), dataset.num_tasks), np.float32)
        residuals = []
        for batch in iterate_batches(dataset.graphs, dataset.labels, indices, budget):
            logits, statistics = self._predict(model, model_state, batch.graphs, batch.graph_mask)
            real = batch.graph_mask
            predictions[batch.graph_index[real]] = np.asarray(logits)[real]
            if statistics:
                residuals.append(np.asarray(statistics["residual"])[real])

        result = {self.metric_name: evaluate_metric(self.metric_name, dataset.labels[indices], predictions[indices])}
        if residuals:
            result["residual"] = float(np.mean(np.concatenate(residuals)))
        return result


def _predict(model: MoleculeModel, model_state, graphs, graph_mask):
    logits, statistics, _ = model(graphs, graph_mask, model_state, inference=True)
    return logits, statistics


def _stack_batches(batches: list[GraphBatch]) -> GraphBatch:
    return jax.tree.map(lambda *leaves: np.stack(leaves), *batches)


def _int_option(extra, name: str, default: int, minimum: int) -> int:
    text = extra.get(name, default)
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {text!r}.") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}.")
    return value


def _float_option(extra, name: str, default: float) -> float:
    text = extra.get(name, default)
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {text!r}.") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {text!r}.")
    return value
