"""Benchmark records as JSON lines and a Markdown report with the performance targets checked."""

import json
import math
from pathlib import Path

MEBIBYTE = 2**20

# The residual that counts as converged in the speed target.
CONVERGED_RESIDUAL = 1e-4


def write_records(path: Path, records: list[dict]) -> None:
    """Write one JSON object per line."""
    with open(path, "w") as file:
        for record in records:
            file.write(json.dumps(record, sort_keys=True) + "\n")


def read_records(path: Path) -> list[dict]:
    """Read the records written by `write_records`."""
    with open(path) as file:
        return [json.loads(line) for line in file if line.strip()]


def measured(records: list[dict]) -> list[dict]:
    """Return the records whose training step compiled, in their original order."""
    return [record for record in records if record.get("temp_bytes") is not None]


def _format(value, scale: float = 1.0, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value / scale:.{digits}g}"


def records_table(records: list[dict]) -> str:
    """Return a Markdown table with one row per measured training step."""
    header = (
        "| task | solver | mode | T | temp MiB | argument MiB | XLA GFLOP | step ms | max abs dE/dy | "
        "grad rel. error | status |\n"
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|\n"
    )
    rows = []
    for record in measured(records):
        rows.append(
            f"| {record['task']} | {record['solver']} | {record['adjoint']} | {record['iterations']} | "
            f"{_format(record['temp_bytes'], MEBIBYTE, 4)} | {_format(record['argument_bytes'], MEBIBYTE)} | "
            f"{_format(record['flops'], 1e9)} | {_format(record.get('step_seconds'), 1e-3)} | "
            f"{_format(record.get('residual'), digits=2)} | {_format(record.get('grad_rel_error'), digits=2)} | "
            f"{record['status']} |"
        )
    return header + "\n".join(rows) + "\n"


def roofline_table(rooflines: list[dict]) -> str:
    """Return a Markdown table of the roofline measurements, one row per task."""
    header = (
        "| task | T | forward GFLOP | forward GFLOP/s | matmul n | matmul GFLOP/s | fraction of matmul |\n"
        "|---|---:|---:|---:|---:|---:|---:|\n"
    )
    rows = [
        f"| {item['task']} | {item['iterations']} | {_format(item.get('forward_flops'), 1e9)} | "
        f"{_format(item.get('forward_flops_per_second'), 1e9)} | {item.get('matmul_size', '-')} | "
        f"{_format(item.get('matmul_flops_per_second'), 1e9)} | {_format(item.get('fraction_of_matmul'), digits=2)} |"
        for item in rooflines
    ]
    return header + "\n".join(rows) + "\n"


def _find(records, task, solver, adjoint, iterations):
    for record in measured(records):
        key = (record["task"], record["solver"], record["adjoint"], record["iterations"])
        if key == (task, solver, adjoint, iterations):
            return record
    return None


def _verdict(ratio, limit, at_most: bool = True) -> str:
    if ratio is None:
        return "not measured"
    met = ratio <= limit if at_most else ratio >= limit
    return "met" if met else "missed"


def evaluate_targets(records: list[dict], rooflines: list[dict]) -> list[dict]:
    """Check the memory, speed and roofline targets against the records.

    **Returns:** one dict per check with `target`, `task`, `solver`, `measured` (a ratio or
    `None`) and `verdict` ("met", "missed" or "not measured").
    """
    checks = []
    combinations = sorted({(r["task"], r["solver"], r["adjoint"]) for r in measured(records)})

    for task, solver, adjoint in combinations:
        # Every implicit variant ("implicit", "implicit-default", ...) is checked on its own.
        if adjoint.startswith("implicit"):
            at_10 = _find(records, task, solver, adjoint, 10)
            at_100 = _find(records, task, solver, adjoint, 100)
            ratio = at_100["temp_bytes"] / at_10["temp_bytes"] if at_10 and at_100 else None
            checks.append({
                "target": "implicit temp_bytes at T = 100 <= 1.2 x T = 10",
                "task": task, "solver": f"{solver} + {adjoint}", "measured": ratio, "verdict": _verdict(ratio, 1.2),
            })

            implicit_15 = _find(records, task, solver, adjoint, 15)
            unrolled_15 = _find(records, task, solver, "unrolled", 15)
            if task == "molpcba":
                ratio = implicit_15["temp_bytes"] / unrolled_15["temp_bytes"] if implicit_15 and unrolled_15 else None
                checks.append({
                    "target": "implicit temp_bytes <= 0.3 x unrolled at T = 15",
                    "task": task, "solver": f"{solver} + {adjoint}", "measured": ratio, "verdict": _verdict(ratio, 0.3),
                })

        if adjoint == "unrolled":
            at_10 = _find(records, task, solver, adjoint, 10)
            at_100 = _find(records, task, solver, adjoint, 100)
            ratio = at_100["temp_bytes"] / at_10["temp_bytes"] if at_10 and at_100 else None
            checks.append({
                "target": "unrolled temp_bytes grows with T (T = 100 over T = 10 > 1)",
                "task": task, "solver": solver, "measured": ratio, "verdict": _verdict(ratio, 1.0, at_most=False),
            })

    for task in sorted({r["task"] for r in measured(records)}):
        checks.append(_speed_check(records, task))

    for item in rooflines:
        checks.append({
            "target": "equilibrium forward FLOP/s >= 0.4 x dense matmul FLOP/s",
            "task": item["task"], "solver": "gd", "measured": item.get("fraction_of_matmul"),
            "verdict": _verdict(item.get("fraction_of_matmul"), 0.4, at_most=False),
        })
    return checks


def _speed_check(records, task) -> dict:
    """Compare the fastest step that reaches the converged residual with unrolled GD that reaches it."""
    target = f"fastest step reaching max abs dE/dy <= {CONVERGED_RESIDUAL:g} <= 1/3 x unrolled GD reaching it"
    timed = [
        r for r in measured(records)
        if r["task"] == task and r.get("step_seconds") is not None and r.get("residual") is not None
        and r["residual"] <= CONVERGED_RESIDUAL and r["status"] == "ok"
    ]
    baseline = [r for r in timed if r["solver"] == "gd" and r["adjoint"] == "unrolled"]
    if not timed or not baseline:
        return {"target": target, "task": task, "solver": "-", "measured": None, "verdict": "not measured"}

    fastest = min(timed, key=lambda r: r["step_seconds"])
    shortest_baseline = min(baseline, key=lambda r: r["iterations"])
    ratio = fastest["step_seconds"] / shortest_baseline["step_seconds"]
    return {
        "target": target,
        "task": task,
        "solver": f"{fastest['solver']} + {fastest['adjoint']} at T = {fastest['iterations']} "
        f"vs unrolled GD at T = {shortest_baseline['iterations']}",
        "measured": ratio,
        "verdict": _verdict(ratio, 1 / 3),
    }


def targets_table(checks: list[dict]) -> str:
    """Return a Markdown table of the target checks."""
    header = "| target | task | solver | measured ratio | verdict |\n|---|---|---|---:|---|\n"
    rows = [
        f"| {c['target']} | {c['task']} | {c['solver']} | {_format(c['measured'], digits=3)} | {c['verdict']} |"
        for c in checks
    ]
    return header + "\n".join(rows) + "\n"


def skipped_list(records: list[dict]) -> str:
    """Return a Markdown list of the combinations that did not compile or run, with the reason."""
    lines = [
        f"- {r['task']}, {r['solver']}, {r['adjoint']}, T = {r['iterations']}: {r['status']}: {r['note']}"
        for r in records if r["status"] != "ok"
    ]
    return "\n".join(lines) + "\n" if lines else "None.\n"


def write_report(path: Path, records: list[dict], rooflines: list[dict], environment: dict, command: str) -> None:
    """Write the Markdown report: environment, targets, every record, roofline and what was left out."""
    versions = ", ".join(f"{name} {version}" for name, version in environment["versions"].items())
    text = (
        "# eqagg bench results\n\n"
        f"Command: `{command}`\n\n"
        f"Device: {environment['device']} ({environment['platform']}, {environment['device_count']} device(s)). "
        f"Versions: {versions}.\n\n"
        "`temp MiB` and `argument MiB` come from XLA's compiled memory analysis. `XLA GFLOP` is XLA's cost "
        "analysis, which counts the body of each loop once, so it does not grow with T. `step ms` is the "
        "median wall-clock time of one jitted training step. `grad rel. error` compares the gradient with "
        "respect to the potential and regulariser parameters against a converged float64 implicit solve.\n\n"
        "## Targets\n\n" + targets_table(evaluate_targets(records, rooflines)) + "\n"
        "## Training steps\n\n" + records_table(records) + "\n"
        "## Roofline\n\n" + roofline_table(rooflines) + "\n"
        "## Not measured\n\n" + skipped_list(records)
    )
    path.write_text(text)
