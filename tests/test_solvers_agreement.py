"""Every inner solver reaches its tolerance on convex energies and agrees with a dense Newton solve."""

import subprocess
import sys

import equinox as eqx
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import eqagg_implicit as ea
from eqagg_implicit._solution import SolveResult
from eqagg_implicit.solvers import (
    LBFGS,
    AndersonAcceleration,
    GaussNewton,
    GradientDescent,
    LevenbergMarquardt,
    run_solver,
)

MAX_SET_SIZE = 6
INPUT_SIZE = 3
OUTPUT_SIZE = 3
TOLERANCE = 1e-9


@pytest.fixture(scope="module", autouse=True)
def float64():
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


def to_float64(tree):
    return jax.tree.map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, tree)


def general_solvers(max_steps=None):
    """Build the solvers for any smooth energy, with `max_steps` overriding every step limit."""
    return {
        "gradient_descent": GradientDescent(max_steps=max_steps or 3000, step_size=0.05, tolerance=TOLERANCE),
        "anderson": AndersonAcceleration(max_steps=max_steps or 300, step_size=0.05, tolerance=TOLERANCE),
        "lbfgs_optimistix": LBFGS(max_steps=max_steps or 300, tolerance=TOLERANCE),
        "lbfgs_jaxopt": LBFGS(max_steps=max_steps or 200, tolerance=TOLERANCE, backend="jaxopt"),
    }


def least_squares_solvers(max_steps=None):
    """Build the solvers for sum-of-squares energies only."""
    steps = max_steps or 60
    return {
        "gauss_newton_dense": GaussNewton(max_steps=steps, tolerance=TOLERANCE, linear_solver="dense"),
        "gauss_newton_cg": GaussNewton(max_steps=steps, tolerance=TOLERANCE, linear_solver="cg"),
        "levenberg_marquardt": LevenbergMarquardt(max_steps=steps, tolerance=TOLERANCE),
    }


def energies():
    """Strongly convex energies: small ResNets under a large L2 weight, and analytic potentials."""
    key_scalar, key_squares = jax.random.split(jax.random.key(0))
    scalar = ea.ResNetPotential(INPUT_SIZE, OUTPUT_SIZE, (8, 8, 1), key=key_scalar)
    squares = ea.SumOfSquaresResNetPotential(INPUT_SIZE, OUTPUT_SIZE, (8, 8, 4), key=key_squares)
    return {
        "resnet": to_float64(ea.Energy(scalar, ea.L2Regulariser(3.0))),
        "sum_of_squares_resnet": to_float64(ea.Energy(squares, ea.L2Regulariser(3.0))),
        "mean": to_float64(ea.Energy(ea.MeanPotential(), ea.L2Regulariser(0.5))),
        "median": to_float64(ea.Energy(ea.MedianPotential(smoothing=0.3), ea.L2Regulariser(0.5))),
    }


def make_set(seed, num_elements):
    x = jax.random.normal(jax.random.key(seed), (MAX_SET_SIZE, INPUT_SIZE), jnp.float64)
    mask = jnp.arange(MAX_SET_SIZE) < num_elements
    return x, mask


@eqx.filter_jit
def solve(solver, energy, x, mask):
    problem = ea.EnergyProblem(energy, x, mask)
    y0 = jnp.zeros(OUTPUT_SIZE, x.dtype)
    return run_solver(solver, problem, solver.init(problem, y0), solver.max_steps, differentiable=False)


@eqx.filter_jit
def newton_reference(energy, x, mask):
    """Minimise the energy with 40 undamped Newton steps on the dense Hessian."""
    problem = ea.EnergyProblem(energy, x, mask)

    def newton_step(y, _):
        hessian = jax.hessian(problem.value)(y)
        return y - jnp.linalg.solve(hessian, problem.grad(y)), None

    y, _ = jax.lax.scan(newton_step, jnp.zeros(OUTPUT_SIZE, x.dtype), None, length=40)
    return y, problem.grad(y)


GENERAL_SOLVER_NAMES = ("gradient_descent", "anderson", "lbfgs_optimistix", "lbfgs_jaxopt")
LEAST_SQUARES_SOLVER_NAMES = ("gauss_newton_dense", "gauss_newton_cg", "levenberg_marquardt")


def solver_cases():
    # Names only: the solvers and energies are built inside the tests, once float64 is enabled.
    # Every solver runs on both ResNet energies that it applies to; the analytic energies run
    # with a few solvers each, because every (energy, solver) pair costs one compilation.
    cases = [("resnet", solver) for solver in GENERAL_SOLVER_NAMES]
    cases += [("sum_of_squares_resnet", solver) for solver in GENERAL_SOLVER_NAMES + LEAST_SQUARES_SOLVER_NAMES]
    cases += [("median", "anderson"), ("median", "lbfgs_optimistix")]
    cases += [("mean", "gauss_newton_dense"), ("mean", "levenberg_marquardt")]
    return cases


def all_solvers(max_steps=None):
    return {**general_solvers(max_steps), **least_squares_solvers(max_steps)}


@pytest.mark.parametrize("energy_name, solver_name", solver_cases())
def test_solver_matches_newton(energy_name, solver_name):
    energy = energies()[energy_name]
    solver = all_solvers()[solver_name]
    x, mask = make_set(seed=1, num_elements=5)

    reference, reference_grad = newton_reference(energy, x, mask)
    state, stats = solve(solver, energy, x, mask)

    assert np.max(np.abs(reference_grad)) < 1e-12
    assert int(stats.result) == SolveResult.SUCCESSFUL
    assert np.max(np.abs(state.grad)) <= TOLERANCE
    np.testing.assert_allclose(state.y, reference, atol=1e-7)
    np.testing.assert_allclose(state.value, energy(reference, x, mask), rtol=1e-12, atol=1e-12)


@hypothesis.settings(max_examples=12, deadline=None, derandomize=True)
@hypothesis.given(seed=st.integers(0, 2**16), num_elements=st.integers(1, MAX_SET_SIZE), scale=st.floats(0.1, 3.0))
def test_solvers_agree_on_random_sets(seed, num_elements, scale):
    # The set size varies through the mask, so every example reuses the compiled solves.
    x, mask = make_set(seed, num_elements)
    x = x * scale
    energy = energies()["sum_of_squares_resnet"]
    reference, _ = newton_reference(energy, x, mask)

    for name, solver in all_solvers().items():
        state, stats = solve(solver, energy, x, mask)
        assert int(stats.result) == SolveResult.SUCCESSFUL, name
        np.testing.assert_allclose(state.y, reference, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("solver_name", GENERAL_SOLVER_NAMES + LEAST_SQUARES_SOLVER_NAMES)
def test_unconverged_solve_is_flagged(solver_name):
    solver = all_solvers(max_steps=2)[solver_name]
    energy = energies()["sum_of_squares_resnet"]
    x, mask = make_set(seed=2, num_elements=6)
    x = 3 * x

    state, stats = solve(solver, energy, x, mask)

    assert int(stats.result) == SolveResult.MAX_STEPS_REACHED
    assert int(stats.num_steps) == 2
    assert np.max(np.abs(state.grad)) > TOLERANCE


def test_unconverged_solution_reports_not_converged():
    energy = energies()["sum_of_squares_resnet"]
    layer = ea.EquilibriumAggregation(
        energy.potential, energy.regulariser, LevenbergMarquardt(max_steps=1, tolerance=1e-12), ea.ImplicitAdjoint()
    )
    x, _ = make_set(seed=3, num_elements=MAX_SET_SIZE)

    solution = layer.solve(3 * x)

    assert not bool(solution.converged)
    assert int(solution.result) == SolveResult.MAX_STEPS_REACHED


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: AndersonAcceleration(max_steps=0), "max_steps"),
        (lambda: AndersonAcceleration(tolerance=-1.0), "tolerance"),
        (lambda: AndersonAcceleration(step_size=0.0), "step_size"),
        (lambda: AndersonAcceleration(history_size=0), "history_size"),
        (lambda: AndersonAcceleration(mixing=1.5), "mixing"),
        (lambda: AndersonAcceleration(mixing=0.0), "mixing"),
        (lambda: AndersonAcceleration(ridge=0.0), "ridge"),
        (lambda: AndersonAcceleration(energy_slack=-0.1), "energy_slack"),
        (lambda: LBFGS(max_steps=2.5), "max_steps"),
        (lambda: LBFGS(history_size=0), "history_size"),
        (lambda: LBFGS(backend="scipy"), "backend"),
        (lambda: LBFGS(backend="jaxopt", line_search="wolfe"), "line_search"),
        (lambda: LBFGS(max_line_search_steps=0), "max_line_search_steps"),
        (lambda: GaussNewton(damping=0.0), "damping"),
        (lambda: GaussNewton(linear_solver="qr"), "linear_solver"),
        (lambda: GaussNewton(cg_rtol=0.0), "cg_rtol"),
        (lambda: GaussNewton(cg_max_steps=0), "cg_max_steps"),
        (lambda: LevenbergMarquardt(initial_damping=-1.0), "initial_damping"),
        (lambda: LevenbergMarquardt(tolerance=float("nan")), "tolerance"),
        (lambda: LevenbergMarquardt(linear_solver="lu"), "linear_solver"),
    ],
)
def test_invalid_setting_raises(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_import_does_not_load_jaxopt():
    code = "import sys, eqagg_implicit; print('jaxopt' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert output.stdout.strip() == "False"
