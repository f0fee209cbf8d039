"""Graph networks (GIN, GCN) with pluggable readouts and Equilibrium Aggregation message passing."""

from .batch_norm import MaskedBatchNorm
from .convs import GCNConv, GINConv
from .encoders import AtomEncoder, BondEncoder, CategoricalEmbedding
from .gnn import GCN, GIN, GraphNetwork, VirtualNodeMLP, default_local_pooling
from .message_passing import EquilibriumMessagePassing
from .readout import GraphReadout, edge_graph_ids, graph_readout, node_graph_ids, padding_masks

__all__ = [
    "AtomEncoder",
    "BondEncoder",
    "CategoricalEmbedding",
    "EquilibriumMessagePassing",
    "GCN",
    "GCNConv",
    "GIN",
    "GINConv",
    "GraphNetwork",
    "GraphReadout",
    "MaskedBatchNorm",
    "VirtualNodeMLP",
    "default_local_pooling",
    "edge_graph_ids",
    "graph_readout",
    "node_graph_ids",
    "padding_masks",
]
