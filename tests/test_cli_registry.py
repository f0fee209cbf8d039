import importlib.machinery
import sys

import pytest

from experiments import registry
from experiments.median import MedianTask


def test_registry_imports_median():
    assert registry.get_task_class("median") is MedianTask


def test_registry_lists_tasks():
    assert {"median", "counting", "molecules"} <= set(registry.task_names())


def test_registry_unknown_task():
    with pytest.raises(registry.TaskNotFoundError, match="Unknown task 'nope'"):
        registry.get_task_class("nope")


def test_registry_missing_task_module(monkeypatch):
    monkeypatch.setitem(registry.TASKS, "ghost", "experiments.no_such_module:GhostTask")

    with pytest.raises(registry.TaskNotFoundError, match="module experiments.no_such_module is not installed"):
        registry.get_task_class("ghost")


def test_registry_missing_optional_dependency(monkeypatch):
    source = "import rdkit_for_test_only\n"
    monkeypatch.setitem(registry.TASKS, "needs-extra", "experiments.needs_extra:Task")
    monkeypatch.setitem(registry.OPTIONAL_MODULES, "rdkit_for_test_only", "molecules")

    finder_path = "experiments.needs_extra"
    monkeypatch.delitem(sys.modules, finder_path, raising=False)

    class Loader:
        def create_module(self, spec):
            return None

        def exec_module(self, target):
            exec(source, target.__dict__)

    class Finder:
        def find_spec(self, name, path=None, target=None):
            if name == finder_path:
                return importlib.machinery.ModuleSpec(name, Loader())
            return None

    monkeypatch.setattr(sys, "meta_path", [Finder(), *sys.meta_path])

    with pytest.raises(registry.MissingDependencyError, match=r'pip install "eqagg-implicit\[molecules\]"'):
        registry.get_task_class("needs-extra")


def test_registry_rejects_non_task_class(monkeypatch):
    monkeypatch.setitem(registry.TASKS, "wrong", "experiments.registry:TaskNotFoundError")

    with pytest.raises(registry.TaskNotFoundError, match="does not define the AbstractTask subclass"):
        registry.get_task_class("wrong")
