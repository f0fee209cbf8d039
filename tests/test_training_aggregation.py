import jax
import jax.numpy as jnp
import pytest

from eqagg_implicit import ResNetPotential, SumOfSquaresResNetPotential, solvers
from eqagg_implicit.adjoints import ImplicitAdjoint, TruncatedAdjoint
from eqagg_implicit.training import SOLVERS, TaskOptions, build_adjoint, build_pooling, build_solver

EXPECTED_CLASSES = {
    "gd": "GradientDescent",
    "anderson": "AndersonAcceleration",
    "lbfgs": "LBFGS",
    "lbfgs-jaxopt": "LBFGS",
    "gauss-newton": "GaussNewton",
    "levenberg-marquardt": "LevenbergMarquardt",
}


@pytest.mark.parametrize("name", SOLVERS)
def test_build_solver_class_and_steps(name):
    solver = build_solver(name, max_steps=7, tolerance=1e-4)

    assert type(solver).__name__ == EXPECTED_CLASSES[name]
    assert solver.max_steps == 7
    assert solver.tolerance == 1e-4


def test_build_solver_lbfgs_backends():
    assert build_solver("lbfgs", 3).backend == "optimistix"
    assert build_solver("lbfgs-jaxopt", 3).backend == "jaxopt"


def test_build_solver_unknown_name():
    with pytest.raises(ValueError, match="Unknown solver 'newton'"):
        build_solver("newton", 3)


def test_build_solver_missing_class(monkeypatch):
    monkeypatch.delattr(solvers, "AndersonAcceleration")

    with pytest.raises(ValueError, match="needs eqagg_implicit.solvers.AndersonAcceleration"):
        build_solver("anderson", 3)


def test_build_adjoint_names():
    assert isinstance(build_adjoint("implicit", 5), ImplicitAdjoint)
    assert build_adjoint("truncated", 3).num_backprop_steps == 3
    assert isinstance(build_adjoint("truncated", 9), TruncatedAdjoint)
    with pytest.raises(ValueError, match="Unknown adjoint 'reverse'"):
        build_adjoint("reverse", 5)


def test_build_pooling_potential_kind():
    key = jax.random.key(0)
    gradient = build_pooling(TaskOptions(solver="gd"), 1, 3, key=key, potential_sizes=(4, 1))
    least_squares = build_pooling(TaskOptions(solver="gauss-newton"), 1, 3, key=key, potential_sizes=(4, 2))

    assert type(gradient.potential) is ResNetPotential
    assert type(least_squares.potential) is SumOfSquaresResNetPotential
    assert least_squares(jnp.ones((5, 1))).shape == (3,)


def test_build_pooling_sum_needs_equal_sizes():
    with pytest.raises(ValueError, match="output_size=3 must equal input_size=2"):
        build_pooling(TaskOptions(aggregation="sum"), 2, 3, key=jax.random.key(0))


def test_task_options_reject_unknown_aggregation():
    with pytest.raises(ValueError, match="Unknown aggregation 'mode'"):
        TaskOptions(aggregation="mode")
