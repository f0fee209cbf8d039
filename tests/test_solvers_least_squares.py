"""Gauss-Newton and Levenberg-Marquardt on sum-of-squares energies."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import eqagg_implicit as ea
from eqagg_implicit._solution import SolveResult
from eqagg_implicit.solvers import GaussNewton, GradientDescent, LevenbergMarquardt, run_solver

TOLERANCE = 1e-6


@pytest.fixture(scope="module", autouse=True)
def float64():
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


def make_problem(seed, weight=0.5):
    key_potential, key_x = jax.random.split(jax.random.key(seed))
    potential = ea.SumOfSquaresResNetPotential(4, 5, (16, 16, 8), key=key_potential)
    energy = jax.tree.map(
        lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a,
        ea.Energy(potential, ea.L2Regulariser(weight)),
    )
    x = jax.random.normal(key_x, (10, 4), jnp.float64)
    return ea.EnergyProblem(energy, x, jnp.ones(10, bool))


@eqx.filter_jit
def solve(solver, problem):
    y0 = jnp.zeros(5, problem.x.dtype)
    return run_solver(solver, problem, solver.init(problem, y0), solver.max_steps, differentiable=False)


def largest_stable_step(problem):
    # Gradient descent converges for step sizes below 2 / L. The step 1 / L at the minimiser
    # is a well-tuned choice that favours the baseline.
    reference, _ = solve(LevenbergMarquardt(max_steps=100, tolerance=1e-10), problem)
    hessian = jax.hessian(problem.value)(reference.y)
    return 1.0 / float(jnp.max(jnp.linalg.eigvalsh(hessian)))


@pytest.mark.parametrize("seed", [0, 1])
def test_gauss_newton_needs_fewer_steps_than_descent(seed):
    # A small L2 weight leaves the energy ill conditioned, as learned energies often are.
    problem = make_problem(seed, weight=0.05)
    descent = GradientDescent(max_steps=5000, step_size=largest_stable_step(problem), tolerance=TOLERANCE)
    solvers = {
        "gradient_descent": descent,
        "gauss_newton": GaussNewton(max_steps=100, tolerance=TOLERANCE),
        "levenberg_marquardt": LevenbergMarquardt(max_steps=100, tolerance=TOLERANCE),
    }

    states, steps = {}, {}
    for name, solver in solvers.items():
        state, stats = solve(solver, problem)
        assert int(stats.result) == SolveResult.SUCCESSFUL, name
        states[name], steps[name] = state, int(stats.num_steps)

    # Each step of every solver costs one evaluation of E and dE/dy; GN and LM add a
    # linearisation of the residual.
    assert 3 * steps["gauss_newton"] < steps["gradient_descent"]
    assert 3 * steps["levenberg_marquardt"] < steps["gradient_descent"]
    np.testing.assert_allclose(states["gauss_newton"].y, states["gradient_descent"].y, atol=1e-5)
    np.testing.assert_allclose(states["levenberg_marquardt"].y, states["gauss_newton"].y, atol=1e-6)


def test_dense_and_cg_directions_agree():
    problem = make_problem(2)
    dense_state, dense_stats = solve(GaussNewton(max_steps=40, tolerance=1e-10, linear_solver="dense"), problem)
    cg_state, cg_stats = solve(GaussNewton(max_steps=40, tolerance=1e-10, linear_solver="cg", cg_rtol=1e-10), problem)

    assert int(dense_stats.result) == SolveResult.SUCCESSFUL
    assert int(cg_stats.result) == SolveResult.SUCCESSFUL
    assert abs(int(dense_stats.num_steps) - int(cg_stats.num_steps)) <= 1
    np.testing.assert_allclose(dense_state.y, cg_state.y, atol=1e-9)


@pytest.mark.parametrize("solver", [GaussNewton(max_steps=30), LevenbergMarquardt(max_steps=30, initial_damping=1e-9)])
def test_energy_never_increases(solver):
    # A far start (y0 = 4) makes full Gauss-Newton steps overshoot, so the safeguards must act.
    problem = make_problem(3, weight=0.05)
    step = eqx.filter_jit(solver.step)
    state = eqx.filter_jit(solver.init)(problem, jnp.full(5, 4.0))

    values = [float(state.value)]
    for _ in range(15):
        state = step(problem, state)
        values.append(float(state.value))

    increases = np.diff(values)
    assert np.all(increases <= 4 * np.finfo(np.float64).eps * np.abs(values[:-1]))
    assert values[-1] < values[0]


@pytest.mark.parametrize("solver_class", [GaussNewton, LevenbergMarquardt])
def test_non_least_squares_energy_raises(solver_class):
    potential = ea.ResNetPotential(3, 2, (8, 1), key=jax.random.key(0))

    with pytest.raises(ValueError, match="SumOfSquaresResNetPotential"):
        ea.EquilibriumAggregation(potential, solver=solver_class(), adjoint=ea.ImplicitAdjoint())


@pytest.mark.parametrize("solver_class", [GaussNewton, LevenbergMarquardt])
def test_non_least_squares_problem_raises_in_solver(solver_class):
    potential = ea.ResNetPotential(3, 2, (8, 1), key=jax.random.key(0))
    energy = ea.Energy(potential, ea.L2Regulariser())
    problem = ea.EnergyProblem(energy, jnp.ones((4, 3)), jnp.ones(4, bool))

    with pytest.raises(ValueError, match="SumOfSquaresResNetPotential"):
        solver_class().init(problem, jnp.zeros(2))


def test_linear_regulariser_is_not_least_squares():
    with pytest.raises(ValueError, match="LinearRegulariser"):
        ea.EquilibriumAggregation(
            ea.MeanPotential(), ea.LinearRegulariser(), LevenbergMarquardt(), ea.ImplicitAdjoint(), output_size=2
        )


@pytest.mark.parametrize("solver_class", [GaussNewton, LevenbergMarquardt])
def test_cg_step_limit_keeps_unrolled_grad(solver_class):
    potential = ea.SumOfSquaresResNetPotential(3, 4, (8, 6), key=jax.random.key(0))
    solver = solver_class(max_steps=3, linear_solver="cg", cg_max_steps=1)
    layer = ea.EquilibriumAggregation(potential, ea.L2Regulariser(0.5), solver, ea.UnrolledAdjoint())
    x = jax.random.normal(jax.random.key(1), (5, 3))

    grad = jax.grad(lambda a: jnp.sum(layer(a) ** 2))(x)

    assert bool(jnp.all(jnp.isfinite(grad)))
