"""The generic training engine: arrays in, a trained Keras model and its history out.

Knows nothing about spectrograms or run directories (the MNIST lab uses it on digits): devices
(GPU with memory growth when present, else CPU; optional mixed precision), ``tf.distribute``
strategies (``none``, ``mirrored`` for several devices of one machine, ``multiworker`` for several
machines configured by ``TF_CONFIG``), tf.data input with prefetch, class weights, early stopping on
the validation loss (never before ``min_epochs``), Keras progress bars. The weights kept are those of the
epoch with the lowest validation loss among the epochs whose validation balanced accuracy is more than
``CHANCE_MARGIN`` above chance; when no epoch clears that, the last epoch is kept and the result says so
(a validation side of two recordings can make an untrained epoch look best: :class:`EpochSelector`).

``model.fit`` drives ``none`` and ``mirrored``; ``multiworker`` runs a custom loop (GradientTape,
``strategy.run``, ``experimental_distribute_dataset``, ``tf.nn.compute_average_loss``) because
``model.fit`` under MultiWorkerMirroredStrategy fails on Keras 3 (keras-team/keras issue 20585).

Training side only (TensorFlow); the device side never imports this module.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable

import numpy as np

from edgecnn.errors import ConfigError
from edgecnn.quiet import keras_verbosity

STRATEGIES = ("none", "mirrored", "multiworker")
#: An epoch whose validation balanced accuracy is at most this far above chance (1 / classes) is
#: never the one kept.
CHANCE_MARGIN = 0.05


@dataclasses.dataclass(frozen=True, kw_only=True)
class FitOptions:
    """How to train; every field has a sensible default for the spectrogram models."""

    epochs: int = 60
    """Upper bound on epochs; early stopping usually ends sooner."""
    batch_size: int = 32
    """Windows per step on each replica (the global batch is this times the replica count)."""
    seed: int = 0
    """Seeds weights, shuffling and dropout."""
    learning_rate: float = 1e-3
    """Adam's step size."""
    patience: int = 12
    """Epochs without a better validation loss before stopping (the kept epoch's weights are restored);
    the edge model's validation loss is noisy in its first epochs, a shorter patience stopped it too early."""
    min_epochs: int = 10
    """Early stopping never stops before this many epochs (capped at ``epochs``)."""
    class_weights: bool = True
    """Weight each class by N / (n_classes * n_class) so unbalanced data trains fairly."""
    strategy: str = "none"
    """``none``, ``mirrored`` or ``multiworker`` (see the module docstring)."""
    mixed_precision: bool = False
    """Compute in float16 on a GPU (weights stay float32); ignored, with a note, on a CPU."""
    quiet: bool = False
    """No progress bars, no log lines."""

    def __post_init__(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"epochs={self.epochs!r} must be an integer >= 1")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size!r} must be an integer >= 1")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy={self.strategy!r} must be one of {STRATEGIES}")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate={self.learning_rate!r} must be > 0")
        if not isinstance(self.patience, int) or self.patience < 1:
            raise ConfigError(f"patience={self.patience!r} must be an integer >= 1")
        if not isinstance(self.min_epochs, int) or self.min_epochs < 0:
            raise ConfigError(f"min_epochs={self.min_epochs!r} must be an integer >= 0")


@dataclasses.dataclass
class FitResult:
    model: object
    """The trained Keras model, float32 weights, best validation epoch restored."""
    history: dict[str, list[float]]
    """Per epoch: loss, accuracy, val_loss, val_accuracy."""
    best_epoch: int
    """1-based epoch whose weights were kept."""
    selection: str
    """Why that epoch was kept (see :class:`EpochSelector`)."""
    seconds_per_epoch: float
    devices: list[str]
    """The devices the strategy trained on."""
    replicas: int
    is_chief: bool = True
    """False on the non-chief workers of ``multiworker`` (only the chief writes results)."""


def log(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def class_weight_vector(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """N / (n_classes * n_c) per class (1 for absent classes): balanced loss on unbalanced data."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 1.0)
    return weights.astype(np.float32)


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean recall over the classes present in ``y_true`` (chance: 1 / their number)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in np.unique(y_true)]))


class EpochSelector:
    """Which epoch's weights to keep and when to stop; both training loops feed it every epoch.

    With a validation side, an epoch is *eligible* when its validation balanced accuracy is more
    than ``CHANCE_MARGIN`` above chance (1 / classes present in the validation side); the kept epoch
    is the eligible one with the lowest validation loss. Training stops once ``patience`` epochs
    pass without a better eligible epoch, but never before ``min_epochs``. When no epoch is
    eligible, the last epoch is kept (an early near-chance epoch with a low loss is what a small
    validation side often shows; restoring it gave one-class models). Without a validation side,
    the lowest training loss decides.
    """

    def __init__(self, *, y_val: np.ndarray, patience: int, min_epochs: int):
        self.has_val = len(y_val) > 0
        self.chance = 1.0 / max(1, np.unique(y_val).size) if self.has_val else None
        self.patience, self.min_epochs = patience, min_epochs
        self.best, self.best_epoch, self.best_weights = np.inf, 0, None
        self.epoch, self.waited, self.top_balanced = 0, 0, -np.inf

    def update(self, loss: float, balanced: float | None, weights: Callable[[], list]) -> bool:
        """Record one epoch (its monitored loss, validation balanced accuracy); True: stop now."""
        self.epoch += 1
        eligible = not self.has_val or (balanced is not None and balanced > self.chance + CHANCE_MARGIN)
        if balanced is not None:
            self.top_balanced = max(self.top_balanced, balanced)
        if eligible and loss < self.best:
            self.best, self.best_epoch, self.best_weights, self.waited = loss, self.epoch, weights(), 0
        else:
            self.waited += 1
        return self.epoch >= self.min_epochs and self.waited >= self.patience

    def finish(self, model) -> tuple[int, str]:
        """Restore the kept weights into ``model``; (kept epoch, why)."""
        if self.best_weights is not None:
            model.set_weights(self.best_weights)
        if not self.has_val:
            return self.best_epoch, "no validation windows: the epoch with the lowest training loss"
        if self.best_weights is None:
            return self.epoch, (f"no epoch's validation balanced accuracy was more than "
                                f"{CHANCE_MARGIN * 100:.0f} points above chance ({self.chance:.2f}; best "
                                f"{self.top_balanced:.2f}): kept the last epoch")
        return self.best_epoch, (f"the lowest validation loss among epochs whose validation balanced "
                                 f"accuracy is more than {CHANCE_MARGIN * 100:.0f} points above chance "
                                 f"({self.chance:.2f})")


def split_cpu(n_devices: int) -> None:
    """Split the CPU into ``n_devices`` logical devices (tests of ``mirrored`` without GPUs).

    Must run before TensorFlow initialises its devices; a later call is refused with a clear error.
    """
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(n_devices)])
    except RuntimeError as exc:
        if len(tf.config.list_logical_devices("CPU")) != n_devices:
            raise ConfigError(f"cannot split the CPU into {n_devices} devices now ({exc}); "
                              f"do it before TensorFlow runs anything") from None


def make_strategy(name: str, *, quiet: bool = False):
    """The tf.distribute strategy for ``name``; GPUs get memory growth first."""
    import tensorflow as tf

    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ConfigError("strategy 'multiworker' needs TF_CONFIG (cluster and task) in the "
                              "environment; see docs/training.md")
        try:
            json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as exc:
            raise ConfigError(f"TF_CONFIG is not valid JSON: {exc}") from None
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised: growth was set (or not) by an earlier run
            pass
    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if gpus:
            return tf.distribute.MirroredStrategy()
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=cpus)
    return tf.distribute.MultiWorkerMirroredStrategy()


def strategy_devices(strategy) -> list[str]:
    try:
        devices = tuple(strategy.extended.worker_devices)
    except RuntimeError:  # the default (no-op) strategy: one device
        devices = ()
    if not devices:
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        devices = [gpus[0].name] if gpus else [tf.config.list_logical_devices("CPU")[0].name]
    return [str(d) for d in devices]


def _dataset(x, y, w, batch: int, *, shuffle_seed: int | None):
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((x, y, w))
    if shuffle_seed is not None:
        data = data.shuffle(len(y), seed=shuffle_seed, reshuffle_each_iteration=True)
    return data.batch(batch).prefetch(tf.data.AUTOTUNE)


def fit(build: Callable[[], object], x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
        y_val: np.ndarray, *, n_classes: int, options: FitOptions = FitOptions()) -> FitResult:
    """Train a fresh model from ``build()`` on (x_train, y_train), early-stopping on (x_val, y_val).

    Labels are integer class indices. With an empty validation set the training loss drives early
    stopping instead.
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(options.seed)
    strategy = make_strategy(options.strategy, quiet=options.quiet)
    devices = strategy_devices(strategy)
    replicas = int(strategy.num_replicas_in_sync)
    has_gpu = bool(tf.config.list_physical_devices("GPU"))
    mixed = options.mixed_precision and has_gpu
    if options.mixed_precision and not has_gpu:
        log("mixed precision asked for, but no GPU: training in float32", options.quiet)
    log(f"training on {', '.join(devices)} ({replicas} replica(s), strategy {options.strategy}"
        f"{', mixed float16' if mixed else ''})", options.quiet)

    cw = class_weight_vector(y_train, n_classes) if options.class_weights else np.ones(n_classes, np.float32)
    x_train = np.asarray(x_train, dtype=np.float32)
    y_train = np.asarray(y_train, dtype=np.int64)
    w_train = cw[y_train]
    x_val = np.asarray(x_val, dtype=np.float32)
    y_val = np.asarray(y_val, dtype=np.int64)
    global_batch = options.batch_size * replicas

    previous_policy = keras.mixed_precision.global_policy()
    if mixed:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        with strategy.scope():
            model = build()
            optimizer = keras.optimizers.Adam(learning_rate=options.learning_rate)
            if options.strategy != "multiworker":
                model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                              metrics=["accuracy"], weighted_metrics=[])
        start = time.perf_counter()
        if options.strategy == "multiworker":
            history, best_epoch, selection = _custom_loop(model, optimizer, strategy, x_train, y_train,
                                                          w_train, x_val, y_val, global_batch, options)
        else:
            history, best_epoch, selection = _keras_fit(model, x_train, y_train, w_train, x_val, y_val,
                                                        global_batch, options)
        elapsed = time.perf_counter() - start
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    if mixed:  # hand back a plain float32 model: what export and the device expect
        weights = model.get_weights()
        model = build()
        model.set_weights(weights)
    epochs_run = max(1, len(history["loss"]))
    if selection.startswith("no epoch"):
        log(f"warning: {selection}", options.quiet)
    return FitResult(model=model, history=history, best_epoch=best_epoch, selection=selection,
                     seconds_per_epoch=elapsed / epochs_run, devices=devices, replicas=replicas,
                     is_chief=is_chief() if options.strategy == "multiworker" else True)


def is_chief() -> bool:
    """True for the worker that writes results: task type ``chief``, or worker 0 when there is none."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    task = config.get("task", {})
    if task.get("type") == "chief":
        return True
    has_chief = "chief" in config.get("cluster", {})
    return task.get("type", "worker") == "worker" and int(task.get("index", 0)) == 0 and not has_chief


def _keras_fit(model, x_train, y_train, w_train, x_val, y_val, global_batch, options: FitOptions):
    import keras

    train_data = _dataset(x_train, y_train, w_train, global_batch, shuffle_seed=options.seed)
    has_val = len(y_val) > 0
    val_data = None
    if has_val:
        val_data = _dataset(x_val, y_val, np.ones(len(y_val), np.float32), global_batch, shuffle_seed=None)
    selector = EpochSelector(y_val=y_val, patience=options.patience, min_epochs=options.min_epochs)
    balanced: list[float] = []

    class Select(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            score = balanced_accuracy(y_val, predict(self.model, x_val).argmax(axis=1)) if has_val else None
            if score is not None:
                balanced.append(score)
            loss = float(logs["val_loss" if has_val else "loss"])
            if selector.update(loss, score, self.model.get_weights):
                self.model.stop_training = True

    fitted = model.fit(train_data, validation_data=val_data, epochs=options.epochs, shuffle=False,
                       verbose=0 if options.quiet else keras_verbosity(), callbacks=[Select()])
    history = {k: [float(v) for v in vals] for k, vals in fitted.history.items()}
    if has_val:
        history["val_balanced_accuracy"] = balanced
    return (history, *selector.finish(model))


def predict(model, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """Class probabilities (N, C) float32, batch by batch, outside any strategy's training step."""
    outs = [np.asarray(model(x[i:i + batch], training=False), dtype=np.float32)
            for i in range(0, len(x), batch)]
    return np.concatenate(outs) if outs else np.zeros((0, model.outputs[0].shape[-1]), np.float32)


def _custom_loop(model, optimizer, strategy, x_train, y_train, w_train, x_val, y_val, global_batch,
                 options: FitOptions):
    """Synchronous data-parallel training across workers (MultiWorkerMirroredStrategy)."""
    import keras
    import tensorflow as tf

    data = _dataset(x_train, y_train, w_train, global_batch, shuffle_seed=options.seed)
    data_options = tf.data.Options()
    data_options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dist_data = strategy.experimental_distribute_dataset(data.with_options(data_options))
    loss_fn = keras.losses.SparseCategoricalCrossentropy(reduction=None)

    with strategy.scope():
        train_loss = keras.metrics.Sum()
        train_weight = keras.metrics.Sum()
        train_acc = keras.metrics.SparseCategoricalAccuracy()

    def step(x, y, w):
        with tf.GradientTape() as tape:
            probs = model(x, training=True)
            per_example = loss_fn(y, probs) * w
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        train_loss.update_state(tf.reduce_sum(per_example))
        train_weight.update_state(tf.reduce_sum(w))
        train_acc.update_state(y, probs)
        return loss

    @tf.function
    def distributed_step(x, y, w):
        strategy.run(step, args=(x, y, w))

    history: dict[str, list[float]] = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": [],
                                       "val_balanced_accuracy": []}
    has_val = len(y_val) > 0
    selector = EpochSelector(y_val=y_val, patience=options.patience, min_epochs=options.min_epochs)
    steps = int(np.ceil(len(y_train) / global_batch))
    for epoch in range(options.epochs):
        for metric in (train_loss, train_weight, train_acc):
            metric.reset_state()
        bar = None if options.quiet else keras.utils.Progbar(steps, verbose=keras_verbosity(),
                                                            stateful_metrics=["loss", "accuracy"])
        if bar is not None:
            print(f"Epoch {epoch + 1}/{options.epochs}", file=sys.stdout, flush=True)
        for i, (x, y, w) in enumerate(dist_data):
            distributed_step(x, y, w)
            if bar is not None:
                bar.update(i + 1, [("loss", float(train_loss.result() / max(float(train_weight.result()),
                                                                             1e-12)))])
        loss = float(train_loss.result()) / max(float(train_weight.result()), 1e-12)
        history["loss"].append(loss)
        history["accuracy"].append(float(train_acc.result()))
        if has_val:  # every worker holds the same weights, so each evaluates the whole split
            probs = predict(model, x_val)
            val_loss = float(np.mean(loss_fn(y_val, probs)))
            history["val_loss"].append(val_loss)
            history["val_accuracy"].append(float(np.mean(probs.argmax(axis=1) == y_val)))
            history["val_balanced_accuracy"].append(balanced_accuracy(y_val, probs.argmax(axis=1)))
        monitored = history["val_loss"][-1] if has_val else loss
        if bar is not None:
            extra = f" - val_loss: {history['val_loss'][-1]:.4f}" if has_val else ""
            print(f"loss: {loss:.4f} - accuracy: {history['accuracy'][-1]:.4f}{extra}", flush=True)
        if selector.update(monitored, history["val_balanced_accuracy"][-1] if has_val else None,
                           model.get_weights):
            break
    if not has_val:
        del history["val_loss"], history["val_accuracy"], history["val_balanced_accuracy"]
    return (history, *selector.finish(model))
