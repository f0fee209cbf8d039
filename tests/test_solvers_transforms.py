"""The solvers inside `EquilibriumAggregation`: jit, vmap, grad, masks, segments and failing sets."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import eqagg_implicit as ea
from eqagg_implicit._solution import SolveResult
from eqagg_implicit.solvers import LBFGS, AndersonAcceleration, GaussNewton, LevenbergMarquardt

TOLERANCE = 1e-10
INPUT_SIZE = 3
OUTPUT_SIZE = 3

SOLVER_NAMES = ("anderson", "lbfgs_optimistix", "lbfgs_jaxopt", "gauss_newton", "levenberg_marquardt")
DIFFERENTIABLE_SOLVER_NAMES = (
    "anderson", "lbfgs_optimistix", "lbfgs_jaxopt_unrolled", "gauss_newton", "levenberg_marquardt"
)


@pytest.fixture(scope="module", autouse=True)
def float64():
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


def make_solver(name):
    return {
        "anderson": AndersonAcceleration(max_steps=200, step_size=0.05, tolerance=TOLERANCE),
        "lbfgs_optimistix": LBFGS(max_steps=200, tolerance=TOLERANCE),
        "lbfgs_jaxopt": LBFGS(max_steps=100, tolerance=TOLERANCE, backend="jaxopt"),
        "lbfgs_jaxopt_unrolled": LBFGS(
            max_steps=60, tolerance=TOLERANCE, backend="jaxopt", line_search="backtracking",
            max_line_search_steps=10, unroll_line_search=True,
        ),
        "gauss_newton": GaussNewton(max_steps=40, tolerance=TOLERANCE),
        "levenberg_marquardt": LevenbergMarquardt(max_steps=40, tolerance=TOLERANCE),
    }[name]


def make_layer(solver, adjoint):
    potential = ea.SumOfSquaresResNetPotential(INPUT_SIZE, OUTPUT_SIZE, (8, 8, 4), key=jax.random.key(0))
    layer = ea.EquilibriumAggregation(potential, ea.L2Regulariser(2.0), solver, adjoint)
    return jax.tree.map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, layer)


def make_set(seed, size):
    return jax.random.normal(jax.random.key(seed), (size, INPUT_SIZE), jnp.float64)


@eqx.filter_jit
def newton_reference(layer, x):
    """Minimise the layer's energy for one unpadded set with 40 Newton steps."""
    problem = ea.EnergyProblem(layer.energy, x, jnp.ones(x.shape[0], bool))

    def newton_step(y, _):
        return y - jnp.linalg.solve(jax.hessian(problem.value)(y), problem.grad(y)), None

    y, _ = jax.lax.scan(newton_step, jnp.zeros(OUTPUT_SIZE, x.dtype), None, length=40)
    return y


def directional_derivative(function, x, direction, eps=1e-5):
    return (function(x + eps * direction) - function(x - eps * direction)) / (2 * eps)


@pytest.mark.parametrize(
    "solver_name, adjoint",
    [(name, ea.ImplicitAdjoint()) for name in SOLVER_NAMES]
    + [(name, ea.UnrolledAdjoint()) for name in DIFFERENTIABLE_SOLVER_NAMES],
)
def test_gradient_matches_finite_differences(solver_name, adjoint):
    layer = make_layer(make_solver(solver_name), adjoint)
    x = make_set(1, 5)
    weights = jnp.arange(1.0, OUTPUT_SIZE + 1)

    loss = eqx.filter_jit(lambda x: jnp.dot(weights, layer(x)))
    gradient = eqx.filter_jit(jax.grad(lambda x: jnp.dot(weights, layer(x))))(x)
    direction = make_set(2, 5)

    assert np.all(np.isfinite(gradient))
    np.testing.assert_allclose(
        jnp.sum(gradient * direction), directional_derivative(loss, x, direction), rtol=1e-5, atol=1e-8
    )


# The Jacobian-free gradient depends on the solver only through y*, so two solvers suffice.
@pytest.mark.parametrize("solver_name", ["anderson", "levenberg_marquardt"])
def test_jacobian_free_gradient_matches_its_formula(solver_name):
    # The Jacobian-free gradient of w . y* in x is -c * d/dx (w . dE/dy(x, y*)) with y* held fixed.
    layer = make_layer(make_solver(solver_name), ea.JacobianFreeAdjoint(step_size=0.1))
    x = make_set(3, 5)
    weights = jnp.arange(1.0, OUTPUT_SIZE + 1)
    y_star = newton_reference(layer, x)

    gradient = eqx.filter_jit(jax.grad(lambda x: jnp.dot(weights, layer(x))))(x)

    def step_term(x):
        problem = ea.EnergyProblem(layer.energy, x, jnp.ones(x.shape[0], bool))
        return -0.1 * jnp.dot(weights, problem.grad(y_star))

    np.testing.assert_allclose(gradient, jax.grad(step_term)(x), rtol=1e-6, atol=1e-9)


def test_unrolled_adjoint_rejects_jaxopt_while_loop():
    layer = make_layer(make_solver("lbfgs_jaxopt"), ea.UnrolledAdjoint())

    with pytest.raises(ValueError, match="ImplicitAdjoint"):
        layer(make_set(0, 4))


@pytest.mark.parametrize("solver_name", SOLVER_NAMES)
def test_segments_match_separate_sets(solver_name):
    layer = make_layer(make_solver(solver_name), ea.ImplicitAdjoint())
    sets = [make_set(4, 4), make_set(5, 2), make_set(6, 4)]
    references = [newton_reference(layer, x) for x in sets]

    # Segments are padded to the largest set and masked, so the two-element set also checks masking.
    ids = jnp.concatenate([jnp.full(len(x), i) for i, x in enumerate(sets)])
    segments = eqx.filter_jit(lambda x, ids: layer.solve(x, segment_ids=ids, num_segments=3))(
        jnp.concatenate(sets), ids
    )
    assert np.all(np.asarray(segments.converged))
    np.testing.assert_allclose(segments.value, jnp.stack(references), atol=1e-8)


@pytest.mark.parametrize("solver_name", SOLVER_NAMES)
def test_failing_set_leaves_batch_unchanged(solver_name):
    # Elements of size 1e200 overflow the energy, so that set fails from its first iterate.
    layer = make_layer(make_solver(solver_name), ea.ImplicitAdjoint())
    solve_batch = eqx.filter_jit(lambda sets: jax.vmap(layer.solve)(sets))
    healthy = jnp.stack([make_set(7, 4), make_set(8, 4), make_set(9, 4)])
    poisoned = healthy.at[1].set(1e200)

    expected = solve_batch(healthy)
    solution = solve_batch(poisoned)

    assert int(solution.result[1]) == SolveResult.NONFINITE
    assert not bool(solution.converged[1])
    for i in (0, 2):
        assert int(solution.result[i]) == SolveResult.SUCCESSFUL
        assert int(solution.num_steps[i]) == int(expected.num_steps[i])
        np.testing.assert_array_equal(solution.value[i], expected.value[i])
