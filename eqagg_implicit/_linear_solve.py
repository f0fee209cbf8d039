"""A symmetric linear solve that never raises, in forward and reverse mode."""

import jax
import lineax as lx


def solve_symmetric(matvec, rhs, solver, tags):
    """Solve A v = rhs for a symmetric linear map A with an iterative lineax solver.

    The solve is wrapped in `lax.custom_linear_solve`, so that its transpose (used by reverse
    mode) is the same non-raising solve. lineax 0.1.1 transposes its own `linear_solve` with
    `throw=True`, which would raise when the solver reaches its step limit.
    """
    structure = jax.ShapeDtypeStruct(rhs.shape, rhs.dtype)

    def solve(matvec_, b):
        operator = lx.FunctionLinearOperator(matvec_, structure, tags=tags)
        return lx.linear_solve(operator, b, solver, throw=False).value

    return jax.lax.custom_linear_solve(matvec, rhs, solve, symmetric=True)
