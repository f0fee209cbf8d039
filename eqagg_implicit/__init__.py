"""eqagg-implicit: Equilibrium Aggregation for JAX.

A set-pooling layer whose output is the minimiser of a learned energy,
y* = argmin_y R(y) + sum_i F(x_i, y), with pluggable solvers and differentiation modes.
"""

from ._energy import Energy, EnergyProblem
from ._layer import EquilibriumAggregation
from ._pooling import AbstractPooling
from ._potentials import (
    AbstractLeastSquaresPotential,
    AbstractPotential,
    FunctionPotential,
    MaxPotential,
    MeanPotential,
    MedianPotential,
    ResNetPotential,
    SumOfSquaresResNetPotential,
    SumPotential,
)
from ._regularisers import AbstractRegulariser, L2Regulariser, LinearRegulariser, ZeroRegulariser
from ._segments import segments_to_padded
from ._solution import Solution, SolveResult
from .adjoints import (
    AbstractAdjoint,
    ImplicitAdjoint,
    JacobianFreeAdjoint,
    TruncatedAdjoint,
    UnrolledAdjoint,
)
from .graphs import GCN, GIN, EquilibriumMessagePassing, GraphReadout, graph_readout
from .pooling import AttentionPooling, MaxPooling, MeanPooling, PNAPooling, SumPooling
from .solvers import (
    LBFGS,
    AbstractSolver,
    AbstractSolverState,
    AndersonAcceleration,
    GaussNewton,
    GradientDescent,
    LevenbergMarquardt,
)

__version__ = "0.1.0"
