import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eqagg_implicit.cli import main
from eqagg_implicit.training.checkpoint import CheckpointError, read_checkpoint_metadata

REPO = Path(__file__).resolve().parents[1]
TINY = ["--latent-size", "4", "--hidden-size", "8", "--eval-size", "16", "--batch-size", "4", "--no-progress"]


def _eqagg(*arguments):
    """Start `eqagg` in a subprocess on the CPU, as a user would."""
    environment = {**os.environ, "JAX_PLATFORMS": "cpu"}
    command = [sys.executable, "-c", "import sys; from eqagg_implicit.cli import main; sys.exit(main())", *arguments]
    return subprocess.Popen(command, cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _checkpoint_step(path):
    try:
        return read_checkpoint_metadata(path)["step"]
    except CheckpointError:
        return 0


def test_killed_run_resumes_without_losing_steps(tmp_path):
    checkpoint = tmp_path / "checkpoint.ckpt"
    arguments = ["train", "median", *TINY, "--output-dir", str(tmp_path), "--eval-every", "1", "--checkpoint-every", "1"]

    # A run far longer than the test waits, killed once a few steps are checkpointed.
    process = _eqagg(*arguments, "--steps", "100000")
    deadline = time.monotonic() + 120
    while _checkpoint_step(checkpoint) < 3:
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no checkpoint at step 3 within 120 s"
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = _checkpoint_step(checkpoint)
    assert not (tmp_path / "summary.json").exists()

    final_steps = killed_at + 3
    resumed = _eqagg(*arguments, "--steps", str(final_steps), "--resume")
    _, errors = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, errors[-3000:]

    assert f"Resumed from {checkpoint} at step {killed_at}" in errors
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [record["step"] for record in records] == list(range(1, final_steps + 1))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == final_steps
    assert read_checkpoint_metadata(checkpoint)["step"] == final_steps


def test_cli_unknown_task(capsys):
    assert main(["train", "no-such-task"]) == 2

    error = capsys.readouterr().err
    assert "Unknown task 'no-such-task'" in error
    assert "median" in error


def test_cli_unknown_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "median", "--no-such-option", "1"])

    assert exit_info.value.code == 2
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err


def test_cli_rejects_unknown_solver(capsys):
    with pytest.raises(SystemExit):
        main(["train", "median", "--solver", "newton"])

    assert "invalid choice: 'newton'" in capsys.readouterr().err


def test_cli_rejects_zero_batch_size(capsys):
    with pytest.raises(SystemExit):
        main(["train", "median", "--batch-size", "0"])

    assert "expected a positive integer, got 0" in capsys.readouterr().err


def test_cli_rejects_unknown_task_option(capsys, tmp_path):
    assert main(["train", "median", "--option", "colour=red", "--output-dir", str(tmp_path)]) == 2

    assert "no option 'colour'" in capsys.readouterr().err


def test_cli_partial_multihost_options(capsys):
    with pytest.raises(SystemExit):
        main(["train", "median", "--num-processes", "2"])

    assert "needs all of --coordinator-address" in capsys.readouterr().err


def test_cli_corrupt_checkpoint(capsys, tmp_path):
    (tmp_path / "checkpoint.ckpt").write_bytes(b"garbage")

    status = main(["train", "median", *TINY, "--steps", "1", "--resume", "--output-dir", str(tmp_path)])

    assert status == 2
    error = capsys.readouterr().err
    assert str(tmp_path / "checkpoint.ckpt") in error
    assert "not an eqagg checkpoint" in error


def test_cli_help_explains_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])

    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "examples per step over all devices and hosts" in text
    assert "maximum inner solver iterations per forward pass" in text
    assert "local devices per process" in text


def test_cli_bench_forwards_arguments(monkeypatch):
    import types

    received = []
    fake = types.ModuleType("benchmarks.cli")
    fake.main = lambda argv: received.append(argv) or 5
    monkeypatch.setitem(sys.modules, "benchmarks.cli", fake)

    assert main(["bench", "--help", "x"]) == 5
    assert received == [["--help", "x"]]


def test_cli_bench_missing_package(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "benchmarks.cli", None)
    monkeypatch.setitem(sys.modules, "benchmarks", None)

    assert main(["bench"]) == 2
    assert "benchmarks package is not installed" in capsys.readouterr().err
