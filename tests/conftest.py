"""Shared fixtures and helpers for the tests of the equilibrium layer and its differentiation modes."""

import inspect

import jax
import pytest

import eqagg_implicit.solvers

# Solver classes that may exist in `eqagg_implicit.solvers`; tests run over those present.
SOLVER_NAMES = ("GradientDescent", "AndersonAcceleration", "LBFGS", "GaussNewton", "LevenbergMarquardt")


def available_solver_classes() -> list[type]:
    """Return the solver classes that `eqagg_implicit.solvers` exports now."""
    classes = [getattr(eqagg_implicit.solvers, name, None) for name in SOLVER_NAMES]
    return [cls for cls in classes if cls is not None]


def make_solver(cls: type, max_steps: int, tolerance: float, step_size: float | None = None):
    """Build a solver with the shared settings, passing `step_size` only to solvers that take one."""
    kwargs = {"max_steps": max_steps, "tolerance": tolerance}
    if step_size is not None and "step_size" in inspect.signature(cls).parameters:
        kwargs["step_size"] = step_size
    return cls(**kwargs)


@pytest.fixture
def x64():
    """Run the test with 64-bit floats enabled, and restore the previous setting afterwards."""
    with jax.enable_x64(True):
        yield
