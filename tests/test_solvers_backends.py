"""Cross-checks against jaxopt: Anderson acceleration and the two L-BFGS backends."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import eqagg_implicit as ea
from eqagg_implicit._solution import SolveResult
from eqagg_implicit.backends import jaxopt_backend
from eqagg_implicit.solvers import LBFGS, AndersonAcceleration, run_solver

TOLERANCE = 1e-9


@pytest.fixture(scope="module", autouse=True)
def float64():
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


def make_problem(seed):
    key_potential, key_x = jax.random.split(jax.random.key(seed))
    potential = ea.ResNetPotential(3, 4, (8, 8, 1), key=key_potential)
    energy = jax.tree.map(
        lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a,
        ea.Energy(potential, ea.L2Regulariser(2.0)),
    )
    x = jax.random.normal(key_x, (7, 3), jnp.float64)
    return ea.EnergyProblem(energy, x, jnp.ones(7, bool))


@eqx.filter_jit
def solve(solver, problem):
    y0 = jnp.zeros(4, problem.x.dtype)
    return run_solver(solver, problem, solver.init(problem, y0), solver.max_steps, differentiable=False)


@pytest.mark.parametrize("seed", [0, 1])
def test_anderson_matches_jaxopt_anderson(seed):
    problem = make_problem(seed)
    settings = dict(step_size=0.05, history_size=5, mixing=1.0, max_steps=300, tolerance=TOLERANCE)

    state, stats = solve(AndersonAcceleration(ridge=1e-8, **settings), problem)
    # jaxopt's ridge is absolute, and the Gram entries (step_size * dE/dy)^2 fall to ~1e-20 near
    # the fixed point, so any larger absolute ridge dominates there and slows jaxopt down
    # (188 steps with 1e-8 on these problems). Our ridge is relative to the largest entry.
    reference, reference_steps = eqx.filter_jit(jaxopt_backend.anderson_solve)(
        problem, jnp.zeros(4), ridge=1e-20, **settings
    )

    assert int(stats.result) == SolveResult.SUCCESSFUL
    assert np.max(np.abs(problem.grad(reference))) <= TOLERANCE
    np.testing.assert_allclose(state.y, reference, atol=1e-9)
    assert int(stats.num_steps) <= 2 * int(reference_steps) + 5
    assert int(reference_steps) <= 2 * int(stats.num_steps) + 5


def test_anderson_beats_plain_fixed_point_iteration():
    problem = make_problem(2)
    anderson = AndersonAcceleration(max_steps=400, step_size=0.05, tolerance=TOLERANCE)
    anderson_state, anderson_stats = solve(anderson, problem)
    plain_state, plain_stats = solve(
        AndersonAcceleration(max_steps=4000, step_size=0.05, history_size=1, tolerance=TOLERANCE), problem
    )

    assert int(anderson_stats.result) == SolveResult.SUCCESSFUL
    assert int(plain_stats.result) == SolveResult.SUCCESSFUL
    assert 3 * int(anderson_stats.num_steps) < int(plain_stats.num_steps)
    np.testing.assert_allclose(anderson_state.y, plain_state.y, atol=1e-9)


def test_anderson_falls_back_when_extrapolation_raises_energy():
    # energy_slack=0 accepts only extrapolations that do not raise the energy beyond rounding error.
    problem = make_problem(3)
    solver = AndersonAcceleration(max_steps=400, step_size=0.2, energy_slack=0.0, tolerance=TOLERANCE)
    state, stats = solve(solver, problem)

    assert int(stats.result) == SolveResult.SUCCESSFUL
    assert np.max(np.abs(state.grad)) <= TOLERANCE


@pytest.mark.parametrize("line_search", ["zoom", "backtracking"])
def test_lbfgs_backends_agree(line_search):
    problem = make_problem(4)

    optimistix_state, optimistix_stats = solve(LBFGS(max_steps=200, tolerance=TOLERANCE), problem)
    jaxopt_state, jaxopt_stats = solve(
        LBFGS(max_steps=100, tolerance=TOLERANCE, backend="jaxopt", line_search=line_search), problem
    )

    assert int(optimistix_stats.result) == SolveResult.SUCCESSFUL
    assert int(jaxopt_stats.result) == SolveResult.SUCCESSFUL
    np.testing.assert_allclose(optimistix_state.y, jaxopt_state.y, atol=1e-9)
    np.testing.assert_allclose(optimistix_state.value, jaxopt_state.value, rtol=1e-13)
    # One jaxopt step is a whole line search; one optimistix step is a single trial point.
    assert int(jaxopt_stats.num_steps) <= int(optimistix_stats.num_steps)


def test_lbfgs_state_is_consistent_at_every_step():
    problem = make_problem(5)
    for solver in (LBFGS(max_steps=10), LBFGS(max_steps=10, backend="jaxopt")):
        step = eqx.filter_jit(solver.step)
        state = eqx.filter_jit(solver.init)(problem, jnp.zeros(4))
        for _ in range(4):
            value, grad = problem.value_and_grad(state.y)
            np.testing.assert_allclose(state.value, value, rtol=1e-12)
            np.testing.assert_allclose(state.grad, grad, rtol=1e-10, atol=1e-14)
            state = step(problem, state)


def test_differentiable_steps_flag():
    assert LBFGS().differentiable_steps
    assert not LBFGS(backend="jaxopt").differentiable_steps
    assert LBFGS(backend="jaxopt", unroll_line_search=True).differentiable_steps
    assert AndersonAcceleration().differentiable_steps
