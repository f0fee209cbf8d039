"""The tasks that `eqagg train TASK` can run, each imported only when requested.

Each entry maps a task name to "module:ClassName", a subclass of
`eqagg_implicit.training.AbstractTask`. Importing lazily keeps `eqagg --help` fast and lets
a task with optional dependencies (RDKit for molecules) fail only when it is run.
"""

import importlib

from eqagg_implicit.training import AbstractTask

TASKS: dict[str, str] = {
    "median": "experiments.median:MedianTask",
    "counting": "experiments.counting:CountingTask",
    "molecules": "experiments.molecules:MoleculeTask",
}

# Third-party modules that only an optional extra installs, and the extra that provides them.
OPTIONAL_MODULES: dict[str, str] = {"rdkit": "molecules", "pandas": "molecules", "ogb": "ogb"}


class TaskNotFoundError(ValueError):
    """A task name that is not registered, or whose module cannot be imported."""


class MissingDependencyError(ImportError):
    """A task needs a package from an optional extra that is not installed."""


def task_names() -> list[str]:
    """Return the registered task names, sorted."""
    return sorted(TASKS)


def get_task_class(name: str) -> type[AbstractTask]:
    """Import and return the task class registered as `name`.

    **Arguments:**

    - `name`: a key of `TASKS`.

    **Returns:** the `AbstractTask` subclass.

    Raises `TaskNotFoundError` for an unknown name or a registered module that is missing,
    and `MissingDependencyError` naming the extra to install when the task's module imports
    an optional package that is absent.
    """
    if name not in TASKS:
        raise TaskNotFoundError(f"Unknown task {name!r}; choose one of {', '.join(task_names())}.")
    module_name, class_name = TASKS[name].split(":")

    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        missing = (error.name or "").split(".")[0]
        if missing in OPTIONAL_MODULES:
            extra = OPTIONAL_MODULES[missing]
            raise MissingDependencyError(
                f"Task {name!r} needs the package {missing!r}, which is not installed. "
                f'Install it with: pip install "eqagg-implicit[{extra}]"'
            ) from error
        if error.name == module_name:
            raise TaskNotFoundError(
                f"Task {name!r} is registered but its module {module_name} is not installed."
            ) from error
        raise

    task_class = getattr(module, class_name, None)
    if not (isinstance(task_class, type) and issubclass(task_class, AbstractTask)):
        raise TaskNotFoundError(f"{module_name} does not define the AbstractTask subclass {class_name}.")
    return task_class
