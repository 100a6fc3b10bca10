"""Is the run learning? A torch-free watch over the train and eval events of a fine-tune.

A run whose validation L1 (real units) stays the same over several evaluations, or whose training loss
does not move at all, is flagged once with a ``warning`` event of kind ``not_learning`` that names the
likely causes (the recipe emits it; the CLI prints it and the Fine-tune tab shows it).
"""

from __future__ import annotations

import math
from collections import deque

NOT_LEARNING = "not_learning"

CAUSES = (
    "the learning rate is too low (or zero) for this model and batch",
    "the actions barely vary in the dataset, so the normalisation leaves nothing to fit "
    "(check the recordings move the arm)",
    "too few episodes or steps: record more demonstrations or train longer",
    "the action head predicts one constant action (try the chunk head, or a higher LoRA rank)",
)


def _flat(values, rel_tol: float) -> bool:
    lo, hi = min(values), max(values)
    scale = max(abs(sum(values) / len(values)), 1e-8)
    return (hi - lo) <= rel_tol * scale


class LearningWatch:
    """Feed it each ``train`` and ``eval`` payload; it returns a warning payload the first time the run
    looks stuck, else None.

    - evaluations: the last ``evals`` values of ``l1_real`` (else ``l1``, else ``val_loss``) agree to
      ``rel_tol`` (relative);
    - training: the last ``train_window`` losses agree to ``rel_tol``.
    """

    def __init__(self, evals: int = 3, train_window: int = 20, rel_tol: float = 1e-4, lr: float | None = None) -> None:
        self.evals = int(evals)
        self.rel_tol = float(rel_tol)
        self.lr = lr
        self._eval: deque[float] = deque(maxlen=self.evals)
        self._train: deque[float] = deque(maxlen=int(train_window))
        self.flagged = False

    def _warn(self, what: str, metric: str, value: float, step: int) -> dict:
        self.flagged = True
        causes = list(CAUSES)
        if self.lr is not None and self.lr <= 0:
            causes.insert(0, "the learning rate is 0")
        return {"event": "warning", "kind": NOT_LEARNING, "metric": metric, "value": value, "step": step,
                "message": f"not learning: {what}; likely causes: {'; '.join(causes[:3])}", "causes": causes}

    def on_train(self, step: int, loss: float | None) -> dict | None:
        if self.flagged or loss is None or not math.isfinite(loss):
            return None
        self._train.append(float(loss))
        if len(self._train) == self._train.maxlen and _flat(self._train, self.rel_tol):
            return self._warn(f"the training loss stayed at {loss:.4g} for {len(self._train)} logged steps",
                              "loss", float(loss), step)
        return None

    def on_eval(self, step: int, result: dict) -> dict | None:
        if self.flagged:
            return None
        for metric in ("l1_real", "l1", "val_loss"):
            value = result.get(metric)
            if value is not None and math.isfinite(value):
                break
        else:
            return None
        self._eval.append(float(value))
        if len(self._eval) == self.evals and _flat(self._eval, self.rel_tol):
            name = {"l1_real": "validation L1", "l1": "validation L1", "val_loss": "validation loss"}[metric]
            return self._warn(f"the {name} stayed at {value:.4g} over the last {self.evals} evaluations",
                              metric, float(value), step)
        return None
