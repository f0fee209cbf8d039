"""End-to-end and unit tests of `eqagg bench` on test-size tasks. No test asserts a timing."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import cli
from benchmarks.configurations import SOLVERS, SolverSpec, get_task, make_adjoint, make_solver
from benchmarks.measurement import compile_step, compute_reference, read_flops, read_memory, run_step, time_calls
from benchmarks.reporting import evaluate_targets, read_records

RECORD_FIELDS = {
    "task", "solver", "adjoint", "iterations", "temp_bytes", "argument_bytes", "flops", "step_seconds",
    "residual", "grad_rel_error", "device", "platform", "versions", "status",
}


@pytest.fixture(scope="module")
def bench_output(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    argv = [
        "--tasks", "tiny-sets", "--solvers", "gd", "--adjoints", "unrolled", "implicit",
        "--iterations", "2", "4", "--repeats", "1", "--out", str(out),
    ]
    assert cli.main(argv) == 0
    return out


def test_cli_records_fields(bench_output):
    records = read_records(bench_output / "records.jsonl")
    assert len(records) == 2 * 2
    for record in records:
        assert RECORD_FIELDS <= set(record)
        assert record["status"] == "ok"
        assert record["temp_bytes"] > 0
        assert record["argument_bytes"] > 0
        assert record["step_seconds"] > 0
        assert math.isfinite(record["residual"])
        assert 0 <= record["grad_rel_error"] < math.inf
        assert record["platform"] == jax.devices()[0].platform
        assert record["versions"]["jax"] == jax.__version__


def test_cli_covers_grid(bench_output):
    records = read_records(bench_output / "records.jsonl")
    keys = {(r["task"], r["adjoint"], r["iterations"]) for r in records}
    assert keys == {("tiny-sets", a, i) for a in ("unrolled", "implicit") for i in (2, 4)}


def test_cli_unrolled_memory_grows(bench_output):
    records = read_records(bench_output / "records.jsonl")
    by_key = {(r["task"], r["adjoint"], r["iterations"]): r for r in records}
    assert by_key["tiny-sets", "unrolled", 4]["temp_bytes"] > by_key["tiny-sets", "unrolled", 2]["temp_bytes"]


def test_cli_markdown_table(bench_output):
    report = (bench_output / "report.md").read_text()
    assert "| task | solver | mode | T |" in report
    assert "| tiny-sets | gd | implicit | 4 |" in report
    assert "| tiny-sets | gd | unrolled | 2 |" in report
    assert "## Targets" in report
    assert "## Roofline" in report


def test_cli_plots_exist(bench_output):
    for name in ("tiny-sets.png", "roofline.png"):
        data = (bench_output / name).read_bytes()
        assert data.startswith(b"\x89PNG")


def test_cli_roofline_fields(bench_output):
    lines = (bench_output / "roofline.jsonl").read_text().splitlines()
    rooflines = [json.loads(line) for line in lines]
    assert [r["task"] for r in rooflines] == ["tiny-sets"]
    for item in rooflines:
        assert item["forward_flops"] > 0
        assert item["matmul_size"] >= 1
        assert item["fraction_of_matmul"] > 0


def test_cli_rejects_zero_repeats(tmp_path):
    with pytest.raises(SystemExit):
        cli.main(["--tasks", "tiny-sets", "--repeats", "0", "--out", str(tmp_path)])


def test_cli_help_lists_options(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    for option in ("--tasks", "--solvers", "--adjoints", "--iterations", "--repeats", "--out", "--quick"):
        assert option in text


@pytest.fixture(scope="module")
def tiny_reference():
    task = get_task("tiny-sets")
    inputs = task.make_inputs(jax.random.key(1))
    layer = task.make_layer(make_solver("gd", 1, task), make_adjoint("unrolled", 1), jax.random.key(0))
    return task, inputs, compute_reference(task, layer, inputs)


def test_reference_is_converged(tiny_reference):
    _, _, reference = tiny_reference
    assert reference.residual <= 1e-8
    assert np.all(np.isfinite(reference.gradient))


def test_converged_implicit_matches_reference(tiny_reference):
    task, inputs, reference = tiny_reference
    layer = task.make_layer(make_solver("gd", 400, task), make_adjoint("implicit", 400), jax.random.key(0))

    result = run_step(compile_step(task, layer, inputs), reference, repeats=1, budget_seconds=1.0)
    assert result["residual"] <= 1e-4
    assert result["grad_rel_error"] < 1e-3


def test_one_step_unrolled_differs_from_reference(tiny_reference):
    task, inputs, reference = tiny_reference
    layer = task.make_layer(make_solver("gd", 1, task), make_adjoint("unrolled", 1), jax.random.key(0))

    result = run_step(compile_step(task, layer, inputs), reference, repeats=1, budget_seconds=1.0)
    assert result["grad_rel_error"] > 1e-2


def test_segment_task_compiles():
    task = get_task("tiny-graphs")
    inputs = task.make_inputs(jax.random.key(1))
    layer = task.make_layer(make_solver("gd", 2, task), make_adjoint("unrolled", 2), jax.random.key(0))

    step = compile_step(task, layer, inputs)
    loss, residual, _ = step.compiled(*step.args)
    assert step.analysis["temp_bytes"] > 0
    assert step.analysis["flops"] > 0
    assert np.isfinite(float(loss))
    assert np.isfinite(float(residual))


def test_missing_solver_is_skipped(monkeypatch, caplog):
    monkeypatch.setitem(SOLVERS, "missing", SolverSpec("NoSuchSolverClass"))
    assert make_solver("missing", 5, get_task("tiny-sets")) is None
    assert "NoSuchSolverClass" in caplog.text


class _FakeCompiled:
    def __init__(self, cost, memory=None):
        self.cost = cost
        self.memory = memory

    def cost_analysis(self):
        return self.cost

    def memory_analysis(self):
        return self.memory


@pytest.mark.parametrize(
    "cost, expected",
    [
        ({"flops": 10.0, "bytes accessed": 4.0}, 10.0),
        ([{"flops": 10.0}, {"flops": 5.0}], 15.0),
        ({"bytes accessed": 4.0}, None),
        ([], None),
        (None, None),
    ],
)
def test_read_flops_forms(cost, expected):
    assert read_flops(_FakeCompiled(cost)) == expected


def test_read_memory_without_analysis():
    assert read_memory(_FakeCompiled(None, None)) == {"temp_bytes": None, "argument_bytes": None, "output_bytes": None}


def test_time_calls_stops_at_budget():
    calls = []

    def function(x):
        calls.append(x)
        return jnp.asarray(x)

    timing = time_calls(function, (1.0,), repeats=5, budget_seconds=0.0)
    assert len(timing.seconds) == 1
    assert len(calls) == 2
    assert float(timing.warmup_output) == 1.0


def _record(adjoint, iterations, temp_bytes, step_seconds=None, residual=None, task="molpcba"):
    return {
        "task": task, "solver": "gd", "adjoint": adjoint, "iterations": iterations, "temp_bytes": temp_bytes,
        "step_seconds": step_seconds, "residual": residual, "status": "ok",
    }


def test_targets_memory_ratios():
    records = [
        _record("implicit", 10, 100), _record("implicit", 100, 110), _record("implicit", 15, 100),
        _record("unrolled", 10, 200), _record("unrolled", 100, 2000), _record("unrolled", 15, 300),
    ]
    checks = {c["target"]: c for c in evaluate_targets(records, [])}
    assert checks["implicit temp_bytes at T = 100 <= 1.2 x T = 10"]["solver"] == "gd + implicit"
    assert checks["implicit temp_bytes at T = 100 <= 1.2 x T = 10"]["measured"] == pytest.approx(1.1)
    assert checks["implicit temp_bytes at T = 100 <= 1.2 x T = 10"]["verdict"] == "met"
    assert checks["unrolled temp_bytes grows with T (T = 100 over T = 10 > 1)"]["verdict"] == "met"
    assert checks["implicit temp_bytes <= 0.3 x unrolled at T = 15"]["measured"] == pytest.approx(1 / 3)
    assert checks["implicit temp_bytes <= 0.3 x unrolled at T = 15"]["verdict"] == "missed"


def test_targets_speed_uses_shortest_converged_baseline():
    records = [
        _record("unrolled", 30, 1, step_seconds=3.0, residual=1e-3, task="counting"),
        _record("unrolled", 60, 1, step_seconds=6.0, residual=1e-5, task="counting"),
        _record("unrolled", 100, 1, step_seconds=10.0, residual=1e-7, task="counting"),
        _record("implicit", 60, 1, step_seconds=1.5, residual=1e-5, task="counting"),
    ]
    speed = [c for c in evaluate_targets(records, []) if c["target"].startswith("fastest")]
    assert len(speed) == 1
    assert speed[0]["measured"] == pytest.approx(0.25)
    assert speed[0]["verdict"] == "met"


def test_targets_roofline_fraction():
    checks = evaluate_targets([], [{"task": "median", "fraction_of_matmul": 0.2}])
    assert checks == [{
        "target": "equilibrium forward FLOP/s >= 0.4 x dense matmul FLOP/s",
        "task": "median", "solver": "gd", "measured": 0.2, "verdict": "missed",
    }]


def test_segment_ids_respect_bound():
    ids = get_task("molpcba").segment_sizes_to_ids()
    sizes = np.bincount(ids)
    assert ids.shape == (1024,)
    assert sizes.tolist() == [128] * 8
