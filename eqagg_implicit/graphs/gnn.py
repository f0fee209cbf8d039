"""GIN and GCN graph networks for molecular property prediction, with a pluggable readout.

The architecture follows OGB's reference models for `ogbg-mol*` (`examples/graphproppred/mol`
in snap-stanford/ogb). An atom encoder is followed by `num_layers` convolutions, each followed by
batch normalisation, ReLU (except after the last layer) and dropout. The last layer's node
embeddings ("JK last") go through a graph readout and a linear head. An optional virtual node
per graph follows OGB's `GNN_node_Virtualnode`.
"""

from collections.abc import Callable, Sequence
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jraph
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from .._layer import EquilibriumAggregation
from .._pooling import AbstractPooling
from .._potentials import SumOfSquaresResNetPotential
from ..pooling import SumPooling
from ..solvers.gradient_descent import GradientDescent
from .batch_norm import MaskedBatchNorm
from .convs import GCNConv, GINConv
from .encoders import AtomEncoder
from .readout import GraphReadout, node_graph_ids, padding_masks


def default_local_pooling(embedding_size: int, *, key: PRNGKeyArray) -> EquilibriumAggregation:
    """Build the Equilibrium Aggregation used for `local_aggregation="equilibrium"` by default.

    It uses the molecular readout configuration of Bartunov et al. (UAI 2022): a sum-of-squares
    ResNet potential with widths [600, 300, 32], the L2 regulariser and 15 gradient-descent steps
    differentiated by unrolling.
    """
    potential = SumOfSquaresResNetPotential(embedding_size, embedding_size, (600, 300, 32), key=key)
    return EquilibriumAggregation(potential, solver=GradientDescent(max_steps=15))


class VirtualNodeMLP(eqx.Module):
    """The per-layer update of the virtual node: Linear, batch norm, ReLU, twice, as in OGB."""

    hidden: eqx.nn.Linear
    hidden_norm: MaskedBatchNorm
    output: eqx.nn.Linear
    output_norm: MaskedBatchNorm

    def __init__(self, embedding_size: int, *, key: PRNGKeyArray):
        hidden_key, output_key = jax.random.split(key)
        self.hidden = eqx.nn.Linear(embedding_size, 2 * embedding_size, key=hidden_key)
        self.hidden_norm = MaskedBatchNorm(2 * embedding_size)
        self.output = eqx.nn.Linear(2 * embedding_size, embedding_size, key=output_key)
        self.output_norm = MaskedBatchNorm(embedding_size)

    def __call__(self, x, graph_mask, state, *, inference):
        z = jax.vmap(self.hidden)(x)
        z, state = self.hidden_norm(z, graph_mask, state, inference=inference)
        z = jax.vmap(self.output)(jax.nn.relu(z))
        z, state = self.output_norm(z, graph_mask, state, inference=inference)
        return jax.nn.relu(z), state


class GraphNetwork(eqx.Module):
    """A GIN or GCN over molecular graphs with a pluggable readout; see `GIN` and `GCN`.

    Call it as `model(graphs, state, key=key, inference=False, graph_mask=mask)`, where `graphs`
    is a `jraph.GraphsTuple` whose `nodes` and `edges` are integer feature arrays of shape
    (num_nodes, len(atom_vocab_sizes)) and (num_edges, len(bond_vocab_sizes)), and `state`
    contains the batch-norm statistics (build the model with `eqx.nn.make_with_state`). It returns
    `(logits of shape (num_graphs, num_tasks), new state)`.

    Batch normalisation uses `MaskedBatchNorm`, whose statistics ignore padding nodes and
    graphs, so a batch padded with `jraph.pad_with_graphs` gives every real graph the output it
    gets unpadded, in training mode too (dropout aside, since its random mask depends on the
    array shapes). All shapes depend only on the padded sizes of the batch, so one compilation
    serves every batch padded to the same budget.

    **Arguments:**

    - `conv_type`: "gin" or "gcn".
    - `num_tasks`: the number of outputs per graph.
    - `atom_vocab_sizes`, `bond_vocab_sizes`: the vocabulary size of every atom and bond feature
      (OGB molecules: [119, 5, 12, 12, 10, 6, 6, 2, 2] and [5, 6, 2]).
    - `readout`: the pooling of node embeddings into graph embeddings; default `SumPooling()`.
      Its input size is `embedding_size`; the head adapts to its output size.
    - `num_layers`: the number of convolutions, at least 2.
    - `embedding_size`: the size of node, edge and virtual-node embeddings.
    - `dropout_rate`: the dropout probability after every layer.
    - `virtual_node`: add a virtual node per graph, connected to all its nodes.
    - `local_aggregation`: "sum" for the convolution's neighbour sum, or "equilibrium" to pool
      every node's incoming messages with `local_pooling` (see `EquilibriumMessagePassing`).
    - `local_pooling`: a function `(embedding_size, *, key) -> AbstractPooling` that builds one
      layer's local pooling, with input and output size `embedding_size`; default
      `default_local_pooling`. Only with "equilibrium".
    - `max_nodes_per_graph`: the largest number of nodes of one graph, passed to the readout.
    - `max_in_degree`: the largest number of incoming edges of one node, for local pooling.
    - `key`: a JAX PRNG key for the initial weights.
    """

    atom_encoder: AtomEncoder
    convs: tuple[GINConv | GCNConv, ...]
    norms: tuple[MaskedBatchNorm, ...]
    virtual_node: Float[Array, " d"] | None
    virtual_node_mlps: tuple[VirtualNodeMLP, ...] | None
    readout: GraphReadout
    head: eqx.nn.Linear
    dropout: eqx.nn.Dropout
    num_layers: int = eqx.field(static=True)
    embedding_size: int = eqx.field(static=True)

    def __init__(
        self,
        conv_type: Literal["gin", "gcn"],
        num_tasks: int,
        atom_vocab_sizes: Sequence[int],
        bond_vocab_sizes: Sequence[int],
        *,
        readout: AbstractPooling | None = None,
        num_layers: int = 5,
        embedding_size: int = 300,
        dropout_rate: float = 0.5,
        virtual_node: bool = False,
        local_aggregation: Literal["sum", "equilibrium"] = "sum",
        local_pooling: Callable[..., AbstractPooling] | None = None,
        max_nodes_per_graph: int | None = None,
        max_in_degree: int | None = None,
        key: PRNGKeyArray,
    ):
        conv_classes = {"gin": GINConv, "gcn": GCNConv}
        if conv_type not in conv_classes:
            raise ValueError(f"`conv_type` must be 'gin' or 'gcn', got {conv_type!r}.")
        if not isinstance(num_layers, int) or num_layers < 2:
            raise ValueError(f"`num_layers` must be an int of at least 2, got {num_layers!r}.")
        if not isinstance(num_tasks, int) or num_tasks <= 0:
            raise ValueError(f"`num_tasks` must be a positive int, got {num_tasks!r}.")
        if not 0 <= dropout_rate < 1:
            raise ValueError(f"`dropout_rate` must lie in [0, 1), got {dropout_rate!r}.")
        if local_aggregation not in ("sum", "equilibrium"):
            raise ValueError(f"`local_aggregation` must be 'sum' or 'equilibrium', got {local_aggregation!r}.")
        if local_aggregation == "sum" and local_pooling is not None:
            raise ValueError("`local_pooling` only applies with local_aggregation='equilibrium'. Pass that too, or drop local_pooling.")
        if local_aggregation == "equilibrium" and local_pooling is None:
            local_pooling = default_local_pooling
        readout = SumPooling() if readout is None else readout
        if not isinstance(readout, AbstractPooling):
            raise TypeError(f"`readout` must be an AbstractPooling, got {type(readout).__name__}.")

        atom_key, conv_key, virtual_key, head_key = jax.random.split(key, 4)
        self.atom_encoder = AtomEncoder(atom_vocab_sizes, embedding_size, key=atom_key)

        convs = []
        for layer_key in jax.random.split(conv_key, num_layers):
            bond_key, pooling_key = jax.random.split(layer_key)
            pooling = None if local_pooling is None else local_pooling(embedding_size, key=pooling_key)
            convs.append(
                conv_classes[conv_type](
                    embedding_size, bond_vocab_sizes, local_pooling=pooling, max_in_degree=max_in_degree, key=bond_key
                )
            )
        self.convs = tuple(convs)
        self.norms = tuple(MaskedBatchNorm(embedding_size) for _ in range(num_layers))

        if virtual_node:
            self.virtual_node = jnp.zeros(embedding_size)
            mlp_keys = jax.random.split(virtual_key, num_layers - 1)
            self.virtual_node_mlps = tuple(VirtualNodeMLP(embedding_size, key=k) for k in mlp_keys)
        else:
            self.virtual_node = None
            self.virtual_node_mlps = None

        self.readout = GraphReadout(readout, max_nodes_per_graph)
        readout_shape = eqx.filter_eval_shape(readout, jnp.zeros((2, embedding_size)))
        if len(readout_shape.shape) != 1:
            raise ValueError(f"`readout` must pool a set into a vector, but it returned shape {readout_shape.shape}.")
        self.head = eqx.nn.Linear(readout_shape.shape[0], num_tasks, key=head_key)
        self.dropout = eqx.nn.Dropout(dropout_rate)
        self.num_layers = num_layers
        self.embedding_size = embedding_size

    def node_embeddings(
        self,
        graphs: jraph.GraphsTuple,
        state: eqx.nn.State,
        *,
        key: PRNGKeyArray | None = None,
        inference: bool = False,
        graph_mask: Bool[Array, " num_graphs"] | None = None,
    ) -> tuple[Float[Array, "num_nodes d"], eqx.nn.State]:
        """Compute the last layer's node embeddings; arguments as for `__call__`."""
        if not inference and self.dropout.p > 0 and key is None:
            raise ValueError("Training mode with dropout needs a PRNG `key`. Pass key=... or inference=True.")
        graph_mask, node_mask, edge_mask = padding_masks(graphs, graph_mask)
        num_graphs = graphs.n_node.shape[0]
        graph_ids = node_graph_ids(graphs)
        pooled_ids = jnp.where(node_mask, graph_ids, num_graphs)
        keys = [None] * (2 * self.num_layers) if key is None else list(jax.random.split(key, 2 * self.num_layers))

        h = self.atom_encoder(graphs.nodes)
        virtual = None
        if self.virtual_node is not None:
            virtual = jnp.broadcast_to(self.virtual_node, (num_graphs, self.embedding_size)).astype(h.dtype)

        for layer in range(self.num_layers):
            last = layer == self.num_layers - 1
            if virtual is not None:
                h = h + virtual[graph_ids]

            out, state = self.convs[layer](h, graphs, node_mask, edge_mask, state, inference=inference)
            out, state = self.norms[layer](out, node_mask, state, inference=inference)
            if not last:
                out = jax.nn.relu(out)
            out = self.dropout(out, key=keys[2 * layer], inference=inference)

            # The virtual node gathers the sum of this layer's input over the real nodes of its graph.
            if virtual is not None and not last:
                gathered = jax.ops.segment_sum(h, pooled_ids, num_graphs) + virtual
                virtual, state = self.virtual_node_mlps[layer](gathered, graph_mask, state, inference=inference)
                virtual = self.dropout(virtual, key=keys[2 * layer + 1], inference=inference)
            h = out

        return h, state

    def __call__(
        self,
        graphs: jraph.GraphsTuple,
        state: eqx.nn.State,
        *,
        key: PRNGKeyArray | None = None,
        inference: bool = False,
        graph_mask: Bool[Array, " num_graphs"] | None = None,
    ) -> tuple[Float[Array, "num_graphs num_tasks"], eqx.nn.State]:
        """Predict `num_tasks` logits for every graph of the batch.

        **Arguments:**

        - `graphs`: the batch, with integer atom features as `nodes` and bond features as `edges`.
        - `state`: the batch-norm statistics.
        - `key`: a PRNG key for dropout; required in training mode unless `dropout_rate` is 0.
        - `inference`: turn off dropout and use the running batch-norm statistics.
        - `graph_mask`: True for real graphs; pass `jraph.get_graph_padding_mask(graphs)` for a
          batch padded with `jraph.pad_with_graphs`. `None` treats every graph as real.

        **Returns:** `(logits, state)`, logits of shape (num_graphs, num_tasks). Rows of padding
        graphs are finite but meaningless.
        """
        h, state = self.node_embeddings(graphs, state, key=key, inference=inference, graph_mask=graph_mask)
        pooled = self.readout(graphs, h, graph_mask)
        return jax.vmap(self.head)(pooled), state


class GIN(GraphNetwork):
    """A Graph Isomorphism Network for molecules. The arguments are those of `GraphNetwork`, less `conv_type`."""

    def __init__(self, num_tasks: int, atom_vocab_sizes: Sequence[int], bond_vocab_sizes: Sequence[int], **kwargs):
        super().__init__("gin", num_tasks, atom_vocab_sizes, bond_vocab_sizes, **kwargs)


class GCN(GraphNetwork):
    """A Graph Convolutional Network for molecules. The arguments are those of `GraphNetwork`, less `conv_type`."""

    def __init__(self, num_tasks: int, atom_vocab_sizes: Sequence[int], bond_vocab_sizes: Sequence[int], **kwargs):
        super().__init__("gcn", num_tasks, atom_vocab_sizes, bond_vocab_sizes, **kwargs)
