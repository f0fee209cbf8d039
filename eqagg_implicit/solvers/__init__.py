"""Inner solvers for the equilibrium energy, one class per file."""

from ._base import AbstractSolver, AbstractSolverState
from .gradient_descent import GradientDescent, GradientDescentState
from .iterate import IterationStats, run_solver

__all__ = ["AbstractSolver", "AbstractSolverState", "GradientDescent", "GradientDescentState", "IterationStats", "run_solver"]
