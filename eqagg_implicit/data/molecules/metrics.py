"""OGB's multi-task binary classification metrics with missing labels.

The rules follow ``ogb.graphproppred.Evaluator`` (OGB 1.3.x). Each task is
scored on its rows with a label (not NaN). A task is skipped unless it has at
least one positive and one negative label. The result is the mean over the
scored tasks. OGB raises if no task can be scored, and so do these
functions, with :class:`NoValidTaskError`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


class NoValidTaskError(ValueError):
    """Raised when no task has both a positive and a negative label."""


def _check_inputs(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred must have the same shape, got {y_true.shape} and {y_pred.shape}")
    if y_true.ndim != 2:
        raise ValueError(f"y_true and y_pred must be 2-D (num_graphs, num_tasks), got {y_true.ndim}-D")
    labelled = ~np.isnan(y_true)
    if not np.all((y_true[labelled] == 0) | (y_true[labelled] == 1)):
        raise ValueError("y_true must contain only 0, 1 or NaN for a missing label")
    if not np.all(np.isfinite(y_pred[labelled])):
        raise ValueError("y_pred must be finite wherever y_true has a label")
    return y_true, y_pred


def per_task_scores(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    score: Callable[[np.ndarray, np.ndarray], float],
) -> np.ndarray:
    """Score each task on its labelled rows; NaN marks a task that OGB skips.

    ``score(labels, predictions)`` is a scikit-learn style metric. Returns a
    float64 array of shape ``(num_tasks,)``.
    """
    y_true, y_pred = _check_inputs(y_true, y_pred)
    scores = np.full(y_true.shape[1], np.nan)
    for task in range(y_true.shape[1]):
        column = y_true[:, task]
        if np.any(column == 1) and np.any(column == 0):
            labelled = ~np.isnan(column)
            scores[task] = score(column[labelled], y_pred[labelled, task])
    return scores


def _mean_over_valid_tasks(scores: np.ndarray, metric_name: str) -> float:
    if np.all(np.isnan(scores)):
        raise NoValidTaskError(
            f"Cannot compute {metric_name}: no task has both a positive and a negative label among the labelled rows"
        )
    return float(np.nanmean(scores))


def mean_average_precision(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Compute molpcba's metric: average precision averaged over the valid tasks.

    ``y_true`` is ``(num_graphs, num_tasks)`` with 0, 1 or NaN; ``y_pred``
    contains scores of the same shape (logits or probabilities). Each task uses
    ``sklearn.metrics.average_precision_score``.
    """
    from sklearn.metrics import average_precision_score

    scores = per_task_scores(y_true, y_pred, average_precision_score)
    return _mean_over_valid_tasks(scores, "average precision")


def mean_roc_auc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Compute ROC-AUC averaged over the valid tasks, as OGB does for MoleculeNet sets.

    Inputs are as for :func:`mean_average_precision`. Each task uses
    ``sklearn.metrics.roc_auc_score``.
    """
    from sklearn.metrics import roc_auc_score

    scores = per_task_scores(y_true, y_pred, roc_auc_score)
    return _mean_over_valid_tasks(scores, "ROC-AUC")


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "ap": mean_average_precision,
    "rocauc": mean_roc_auc,
}


def evaluate(eval_metric: str, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Compute the metric named by a data set's ``eval_metric`` (``"ap"`` or ``"rocauc"``)."""
    if eval_metric not in METRICS:
        raise ValueError(f"eval_metric must be one of {sorted(METRICS)}, got {eval_metric!r}")
    return METRICS[eval_metric](y_true, y_pred)
