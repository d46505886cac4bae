"""The degenerate-model guard: say so when a trained model is no better than a constant or a coin.

A model is flagged when, on a validation or test set holding at least two classes in roughly equal
shares (each at least half its fair share of the windows),

- it predicts one class for ``DOMINANT_SHARE`` (90 %) or more of the windows, or
- its balanced accuracy (mean recall over the classes present) is within ``CHANCE_MARGIN``
  (5 points) of chance, 1 / classes present, or below it.

A set of a single class (a leave-one-load-out fold holding one fault type) proves nothing either
way and is not judged. :func:`assess` also names the likely cause from the training history and the
validation side: too few validation recordings, a near-chance epoch restored, a model that did not
learn even its training windows, or held-out recordings the features do not separate.

numpy only (``train``, ``cv`` and the report use it).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

#: Share of a balanced set's windows predicted as one class that flags the model.
DOMINANT_SHARE = 0.9
#: Balanced accuracy within this of chance (or below) flags the model.
CHANCE_MARGIN = 0.05
#: Fewer validation recordings per class than this cannot choose an epoch reliably.
MIN_VALIDATION_RECORDINGS = 2


@dataclasses.dataclass
class Verdict:
    """The guard's finding: flagged or not, the evidence, and the likely cause."""

    degenerate: bool
    reasons: list[str]
    """One line per failed check, naming the set (``validation``, ``test``, ...)."""
    cause: str | None = None
    """The likely cause, for a flagged model."""

    def to_json(self) -> dict[str, Any]:
        return {"degenerate": self.degenerate, "degenerate_reasons": list(self.reasons),
                "degenerate_cause": self.cause}

    def warning(self) -> str:
        """The one-line warning printed by ``train`` and ``cv`` (empty for a sound model)."""
        if not self.degenerate:
            return ""
        return f"warning: degenerate model: {'; '.join(self.reasons)}. Likely cause: {self.cause}"


def balanced(y_true: np.ndarray, n_classes: int) -> bool:
    """At least two classes, each with at least half its fair share of the windows."""
    counts = np.bincount(np.asarray(y_true, dtype=np.int64), minlength=n_classes)
    present = counts[counts > 0]
    return present.size >= 2 and bool(present.min() >= 0.5 * counts.sum() / present.size)


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean recall over the classes present in ``y_true``."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in np.unique(y_true)]))


def check_predictions(name: str, y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> list[str]:
    """The checks on one set: a reason per failure, empty when sound or not judgeable (one class)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.size == 0 or not balanced(y_true, len(classes)):
        return []
    reasons = []
    share = np.bincount(y_pred, minlength=len(classes)) / y_pred.size
    top = int(share.argmax())
    if share[top] >= DOMINANT_SHARE:
        reasons.append(f"{name}: {share[top]:.0%} of {y_true.size} windows predicted {classes[top]!r}")
    chance = 1.0 / np.unique(y_true).size
    score = balanced_accuracy(y_true, y_pred)
    if score < chance + CHANCE_MARGIN:
        reasons.append(f"{name}: balanced accuracy {score:.1%}, chance {chance:.0%}")
    return reasons


def assess(sets: dict[str, tuple[np.ndarray, np.ndarray]], classes: list[str], *,
           history: dict[str, list[float]] | None = None, best_epoch: int | None = None,
           validation_recordings: dict[str, int] | None = None, validation_rule: str | None = None) -> Verdict:
    """Judge a model from its predictions on named sets ({name: (y_true, y_pred)}).

    ``history`` (Keras: ``accuracy``, ``val_accuracy`` per epoch), ``best_epoch`` (1-based, the
    epoch restored), ``validation_recordings`` (class -> recordings on the validation side) and
    ``validation_rule`` (how it was chosen) let the verdict name the likely cause.
    """
    reasons = [r for name, (y_true, y_pred) in sets.items() for r in check_predictions(name, y_true, y_pred, classes)]
    if not reasons:
        return Verdict(False, [])
    return Verdict(True, reasons, likely_cause(sets, classes, history=history, best_epoch=best_epoch,
                                               validation_recordings=validation_recordings,
                                               validation_rule=validation_rule))


def likely_cause(sets: dict[str, tuple[np.ndarray, np.ndarray]], classes: list[str], *,
                 history: dict[str, list[float]] | None, best_epoch: int | None,
                 validation_recordings: dict[str, int] | None, validation_rule: str | None) -> str:
    """The most likely reason a flagged model is degenerate, in order of how fundamental it is."""
    history = history or {}
    epoch = (best_epoch or len(history.get("accuracy") or [0])) - 1
    chance = 1.0 / max(2, len(classes))
    train_acc = max(history.get("accuracy") or [], default=None)  # the best any epoch reached
    val_acc = _at(history.get("val_accuracy"), epoch)
    if train_acc is not None and train_acc < chance + CHANCE_MARGIN:
        return (f"the model did not learn even its training windows (at best {train_acc:.1%} of them in "
                f"{len(history['accuracy'])} epochs): classes not separable by these features, or labels "
                "inconsistent")
    few = validation_recordings is not None and min(validation_recordings.values(), default=0) \
        < MIN_VALIDATION_RECORDINGS
    if val_acc is not None and val_acc < chance + CHANCE_MARGIN:
        tail = (f"; the validation side ({_describe(validation_recordings, validation_rule)}) is too small to "
                "choose an epoch") if few else ""
        return f"a near-chance epoch was restored (epoch {epoch + 1}, validation accuracy {val_acc:.1%}){tail}"
    if few:
        return (f"too few validation recordings ({_describe(validation_recordings, validation_rule)}): the "
                f"epoch chosen on them does not carry to other recordings")
    held_out = [name for name in sets if name != "validation"]
    if any(check_predictions(name, *sets[name], classes) for name in held_out):
        return ("classes not separable by these features across these recordings: the model fits the "
                "training conditions (training accuracy up to "
                f"{'-' if train_acc is None else f'{train_acc:.1%}'}) but not the held-out ones")
    return "the validation side itself is not separated; check the labels and the validation recordings"


def _at(values: list[float] | None, index: int) -> float | None:
    return float(values[index]) if values and 0 <= index < len(values) else None


def _describe(per_class: dict[str, int] | None, rule: str | None) -> str:
    counts = ", ".join(f"{n} {c}" for c, n in (per_class or {}).items())
    return f"{counts} recording(s), {rule}" if rule else f"{counts} recording(s)"


__all__ = ["CHANCE_MARGIN", "DOMINANT_SHARE", "Verdict", "assess", "balanced", "check_predictions"]
