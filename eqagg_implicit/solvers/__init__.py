"""Inner solvers for the equilibrium energy, one class per file."""

from ._base import AbstractSolver, AbstractSolverState
from .anderson import AndersonAcceleration, AndersonState
from .gauss_newton import GaussNewton, GaussNewtonState
from .gradient_descent import GradientDescent, GradientDescentState
from .iterate import IterationStats, run_solver
from .lbfgs import LBFGS, LBFGSState
from .levenberg_marquardt import LevenbergMarquardt, LevenbergMarquardtState

__all__ = [
    "AbstractSolver",
    "AbstractSolverState",
    "AndersonAcceleration",
    "AndersonState",
    "GaussNewton",
    "GaussNewtonState",
    "GradientDescent",
    "GradientDescentState",
    "IterationStats",
    "LBFGS",
    "LBFGSState",
    "LevenbergMarquardt",
    "LevenbergMarquardtState",
    "run_solver",
]
