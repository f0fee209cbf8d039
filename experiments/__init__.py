"""Experiments: tasks that the `eqagg train` command runs, listed in `registry.py`."""
