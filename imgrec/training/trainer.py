"""Transfer-learning training: a RunConfig in, a registered model with card, report and curves out.

Two phases:
    1. head: the backbone frozen, only the softmax head trains. With augmentation off (or
       flip only) the backbone's pooled embeddings are computed once, cached in the run
       directory, and the head trains on them in seconds per epoch;
    2. fine-tune (optional): the top ``fine_tune_layers`` backbone layers unfreeze at a lower
       learning rate; BatchNormalization layers stay frozen and in inference mode.

A run is resumable: after every finished epoch the weights go to ``checkpoints/last.weights.h5``,
the optimizer's step and moments to ``checkpoints/last.optimizer.npz`` and the progress to
``state.json``; a resumed run reloads all three and continues at the next epoch.
The cancel flag is checked at every batch end. See :mod:`imgrec.training.runs` for the run directory.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import time
import traceback
import warnings
from dataclasses import fields
from pathlib import Path

import numpy as np

from imgrec.core.errors import ImgrecError, WeightsFallbackWarning
from imgrec.core.files import write_atomically
from imgrec.core.settings import Settings
from imgrec.datasets import loading, multilabel
from imgrec.datasets.augment import AugmentConfig, augmentation_layers
from imgrec.datasets.loading import BUILTIN
from imgrec.modeling.backbones import BACKBONES
from imgrec.registry import catalog
from imgrec.registry.card import TRAINING_REPORT, ModelCard
from imgrec.tasks.registry import task_named
from imgrec.training import evaluation, runs
from imgrec.training.config import RunConfig

log = logging.getLogger(__name__)

OPTIMIZER_CHECKPOINT = "last.optimizer.npz"


# -- Public entry points ---------------------------------------------------------------------------


def train(config: RunConfig | dict, settings: Settings) -> runs.Run:
    """Create a run and train it in this process (waiting for the slot). Returns the finished run."""
    run = runs.create_run(config, settings)
    execute_run(run, settings)
    return run


def execute_run(run: runs.Run, settings: Settings) -> dict:
    """The worker: claim the run, wait for the training slot, train, register the model. Never raises
    for training errors: they end up in the status as ``failed``; returns the final status."""
    run.update_status(pid=os.getpid(), pid_start=runs.process_start_token(os.getpid()))
    try:
        config = RunConfig.from_dict(run.config_dict())
        with runs.training_slot(run, settings):
            started = time.time()
            run.update_status(state=runs.RUNNING, started=runs.now(), message="Loading the dataset…", eta_seconds=None)
            result = _Trainer(run, config, settings).run()
        wall = time.time() - started
        # Cached activations only serve a resume; a finished run does not need its (large) cache.
        shutil.rmtree(run.dir / "features", ignore_errors=True)
        return run.update_status(state=runs.COMPLETED, finished=runs.now(), message=f"Saved {result['model_ref']}.",
                                 eta_seconds=0, session_seconds=round(wall, 1), **result)
    except (runs.Cancelled, _CancelledDuringTraining):
        return run.update_status(state=runs.CANCELLED, finished=runs.now(), eta_seconds=None,
                                 message="Cancelled; the last finished epoch is kept. Resume to continue.")
    except ImgrecError as exc:
        return run.update_status(state=runs.FAILED, finished=runs.now(), error=str(exc), message=str(exc))
    except Exception as exc:  # noqa: BLE001 - the worker records every failure instead of vanishing
        traceback.print_exc()
        return run.update_status(state=runs.FAILED, finished=runs.now(), error=f"{type(exc).__name__}: {exc}",
                                 message="Training failed; see the log.")


class _CancelledDuringTraining(Exception):
    pass


# -- The trainer -----------------------------------------------------------------------------------


class _Trainer:
    def __init__(self, run: runs.Run, config: RunConfig, settings: Settings):
        self.run_dir = run
        self.config = config
        self.settings = settings
        self.task = task_named(config.task)
        self.state = run.training_state()  # {"epoch": finished epochs, "phases_done": [...], "best": ...}
        self.state.setdefault("epoch", 0)
        self.state.setdefault("phases_done", [])
        self.state.setdefault("best", None)
        self.state.setdefault("wait", 0)
        self.state.setdefault("train_seconds", 0.0)
        # Wall time of earlier sessions (up to their last checkpoint) plus this one: data, features, epochs.
        self._wall_before = float(self.state.get("wall_seconds", 0.0))
        self._session_started = time.time()
        self._reconcile_metrics()

    def wall_seconds(self) -> float:
        return self._wall_before + time.time() - self._session_started

    def _reconcile_metrics(self) -> None:
        """After a kill: keep one line per finished epoch (up to the saved state), restoring the last."""
        rows = {r["epoch"]: r for r in self.run_dir.metrics() if r.get("epoch", 0) <= self.state["epoch"]}
        last = self.state.get("last_row")
        if last and last["epoch"] not in rows:
            rows[last["epoch"]] = last
        text = "".join(json.dumps(rows[e]) + "\n" for e in sorted(rows))
        if self.run_dir.metrics_path.exists() or text:
            write_atomically(self.run_dir.metrics_path, text.encode())

    def log(self, message: str) -> None:
        line = f"[{runs.now()}] {message}"
        print(line, flush=True)
        if os.environ.get(runs.WORKER_LOG_ENV) != "stdout":  # a launched worker's stdout already is the log
            with open(self.run_dir.log_path, "a") as handle:
                handle.write(line + "\n")

    # -- orchestration --

    def run(self) -> dict:
        import keras

        from imgrec.modeling.build import build_model  # Keras loads only in the training worker

        config, run = self.config, self.run_dir
        keras.utils.set_random_seed(config.seed)
        split_args = dict(val_fraction=config.val_fraction, test_fraction=config.test_fraction, seed=config.seed,
                          limit_per_class=config.limit_per_class)
        if self.task.label_sets:
            self.dataset = multilabel.load_multilabel_dataset(config.dataset, self.settings, config.dataset_format,
                                                              **split_args)
        else:
            self.dataset = loading.load_dataset(config.dataset, self.settings, **split_args)
        loading.write_report(self.dataset.report, run.dir / "dataset_report.json")
        self.log(self.dataset.describe())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", WeightsFallbackWarning)
            self.model = build_model(config.backbone, self.dataset.num_classes, config.image_size, config.weights,
                                     config.dropout, head=self.task.head)
        self.weights_notes = [str(w.message) for w in caught if issubclass(w.category, WeightsFallbackWarning)]
        for note in self.weights_notes:
            self.log(f"Warning: {note}")
        run.update_status(warning=" ".join(self.weights_notes) or None)
        run.checkpoints_dir.mkdir(exist_ok=True)
        last = run.checkpoints_dir / "last.weights.h5"
        if self.state["epoch"] > 0 and last.exists():
            self.model.load_weights(last)
            self.log(f"Resuming after epoch {self.state['epoch']} (phases done: {self.state['phases_done']}).")
        run.update_status(total_epochs=config.total_epochs, epoch=self.state["epoch"],
                          num_classes=self.dataset.num_classes, class_names=list(self.dataset.class_names),
                          split_sizes={k: len(v) for k, v in self.dataset.splits.items()})
        has_backbone = _backbone_layer(self.model) is not None
        if "head" not in self.state["phases_done"] and config.epochs > 0:
            self._phase("head", 0, config.epochs, frozen=has_backbone)
        if has_backbone and config.fine_tune_epochs > 0 and "fine_tune" not in self.state["phases_done"]:
            self._phase("fine_tune", config.epochs, config.epochs + config.fine_tune_epochs, frozen=False)
        return self._finish()

    def _phase(self, phase: str, first_epoch: int, end_epoch: int, frozen: bool) -> None:
        import keras

        config, model = self.config, self.model
        backbone = _backbone_layer(model)
        learning_rate = config.learning_rate if phase == "head" else config.fine_tune_learning_rate
        views = _cacheable_views(config.augment) if (backbone is not None and config.cache_embeddings) else None
        # Where the fine-tuned part starts; with caching, the head phase reuses the same activations.
        cut = cut_layer(backbone, config.fine_tune_layers) if (
            views is not None and config.fine_tune_epochs > 0) else None
        if backbone is None:
            pass
        elif frozen:
            set_trainable(backbone, 0)
        elif cut is not None:
            set_trainable(backbone, len(backbone.layers) - [layer.name for layer in backbone.layers].index(cut))
        else:
            set_trainable(backbone, config.fine_tune_layers)
        start = max(self.state["epoch"], first_epoch)
        if start >= end_epoch:
            self._end_phase(phase, end_epoch)
            return
        self.run_dir.update_status(phase=phase, message=f"{phase.replace('_', '-')} phase from epoch {start + 1}…")
        if views is not None and (frozen or cut is not None):
            fit_model, train_ds, val_ds = self._cached_datasets(views, cut, trainable_top=not frozen)
        else:
            fit_model, train_ds, val_ds = model, *self._image_datasets(config.augment)
        fit_model.compile(
            optimizer=keras.optimizers.Adam(learning_rate),
            loss=self.task.loss(self.config, self.dataset.splits["train"].labels),
            metrics=self.task.training_metrics(self.dataset.num_classes),
        )
        if start > first_epoch:
            step = restore_optimizer(fit_model, self.run_dir.checkpoints_dir / OPTIMIZER_CHECKPOINT, phase, start)
            self.log(f"Restored the optimizer state at step {step}." if step is not None else
                     "No matching optimizer state was saved; the optimizer starts afresh.")
        recorder = _Recorder(self, phase, first_epoch, end_epoch, learning_rate)
        callbacks = [recorder]
        if config.tensorboard and not _tensorboard_installed():
            self.log("TensorBoard logs skipped: the tensorboard package is not installed.")
        elif config.tensorboard:
            callbacks.append(keras.callbacks.TensorBoard(str(self.run_dir.tensorboard_dir / phase), write_graph=False))
        fit_model.fit(
            train_ds, validation_data=val_ds, epochs=end_epoch, initial_epoch=start, callbacks=callbacks,
            class_weight=self._class_weights(), verbose=2, shuffle=False,
        )
        if recorder.cancelled:
            raise _CancelledDuringTraining()
        self._end_phase(phase, recorder.last_epoch_done)

    def _end_phase(self, phase: str, epoch: int) -> None:
        """Continue from the phase's best weights; record the phase as done."""
        best = self.run_dir.checkpoints_dir / "best.weights.h5"
        if best.exists():
            self.model.load_weights(best)
        self.state["phases_done"].append(phase)
        self.state["epoch"] = max(self.state["epoch"], epoch)
        self.state["wait"] = 0
        _save_weights(self.model, self.run_dir.checkpoints_dir / "last.weights.h5")
        self.run_dir.save_training_state(self.state)
        self.log(f"Phase {phase} done after epoch {self.state['epoch']}.")

    # -- data --

    def _image_datasets(self, augment: AugmentConfig):
        config, splits, n = self.config, self.dataset.splits, self.dataset.num_classes
        layers = augmentation_layers(augment, config.seed)
        common = dict(image_size=config.image_size, num_classes=n, batch_size=config.batch_size)
        train = loading.make_tf_dataset(splits["train"], shuffle=True, augment=layers, seed=config.seed,
                                     cache=splits["train"].paths is not None, **common)
        val = loading.make_tf_dataset(splits["val"], cache=splits["val"].paths is not None, **common)
        return train, val

    def _cached_datasets(self, views: list[str], cut: str | None, trainable_top: bool):
        """Train only what sits above a frozen part, on that part's outputs computed once.

        The frozen part is the backbone below ``cut`` (or all of it and the pooling when ``cut`` is
        None). With ``trainable_top`` the backbone layers from ``cut`` up train with the head;
        otherwise the head trains on pooled embeddings (derived from the cut activations through the
        frozen top, which is cheap). Every layer is shared with the full model, so its weights are
        the ones that get saved."""
        import keras
        import tensorflow as tf

        model, config, n = self.model, self.config, self.dataset.num_classes
        backbone = _backbone_layer(model)
        preprocessed = model.get_layer("preprocess").output
        if cut is None:
            lower = keras.Model(model.inputs, model.get_layer("pool").output)
            top = None
        else:
            below = keras.Model(backbone.inputs, backbone.get_layer(cut).input)
            lower = keras.Model(model.inputs, below(preprocessed, training=False))
            top = keras.Model(backbone.get_layer(cut).input, backbone.output, name="backbone_top")
        tag = "pool" if cut is None else cut
        (train_x, train_y), (val_x, val_y) = (self._features("train", views, lower, tag),
                                              self._features("val", ["identity"], lower, tag))
        if top is not None and not trainable_top:
            pool = model.get_layer("pool")
            to_embedding = tf.function(lambda b: pool(top(tf.cast(b, tf.float32), training=False)))
            train_x, val_x = (np.concatenate([to_embedding(x[i : i + 256]).numpy() for i in range(0, len(x), 256)])
                              for x in (train_x, val_x))
        inputs = keras.Input(train_x.shape[1:], name="features")
        x = inputs
        if top is not None and trainable_top:
            x = model.get_layer("pool")(top(x, training=False))
        outputs = model.get_layer("predictions")(model.get_layer("dropout")(x))
        trainable = keras.Model(inputs, outputs, name="trainable_top")

        def ds(x, y, shuffle):
            d = tf.data.Dataset.from_tensor_slices((x, tf.one_hot(y, n) if y.ndim == 1 else y.astype(np.float32)))
            if shuffle:
                d = d.shuffle(len(x), seed=config.seed, reshuffle_each_iteration=True)
            return d.batch(config.batch_size).map(lambda a, b: (tf.cast(a, tf.float32), b)).prefetch(tf.data.AUTOTUNE)

        return trainable, ds(train_x, train_y, True), ds(val_x, val_y, False)

    def _features(self, split: str, views: list[str], lower, tag: str) -> tuple[np.ndarray, np.ndarray]:
        """Outputs of the frozen ``lower`` model for a split (one row per image and view), cached on disk
        in the run directory so a resumed run does not recompute them."""
        import tensorflow as tf


        path = self.run_dir.dir / "features" / f"{split}-{tag}-{'+'.join(views)}.npy"
        labels_path = path.with_suffix(".labels.npy")
        if path.exists() and labels_path.exists():
            return np.load(path, mmap_mode="r"), np.load(labels_path)
        self.run_dir.update_status(message=f"Computing {split} features once (frozen layers)…")
        self.log(f"Computing {split} features below '{tag}' ({'+'.join(views)})…")
        infer = tf.function(lambda batch: lower(batch, training=False))
        split_data = self.dataset.splits[split]
        pipeline = loading.make_tf_dataset(split_data, self.config.image_size, self.dataset.num_classes,
                                        batch_size=128, cache=False, one_hot=False)
        outputs = {view: [] for view in views}
        done, started = 0, time.time()
        for images, _ in pipeline:
            for view in views:
                batch = tf.image.flip_left_right(images) if view == "flip" else images
                # float16 halves memory and disk; plenty for frozen activations.
                outputs[view].append(infer(batch).numpy().astype(np.float16))
            done += int(images.shape[0])
            if self.run_dir.cancel_requested():
                raise _CancelledDuringTraining()
            rate = done / max(time.time() - started, 1e-6)
            self.run_dir.report_progress(message=f"Computing {split} features: {done}/{len(split_data)}",
                                         eta_seconds=_round((len(split_data) - done) / rate))
        x = np.concatenate([np.concatenate(outputs[v]) for v in views])
        y = np.concatenate([split_data.labels] * len(views)).astype(np.int32)
        path.parent.mkdir(exist_ok=True)
        for target, array in ((labels_path, y), (path, x)):
            tmp = target.with_name(f".{target.name}.tmp.npy")
            np.save(tmp, array)
            os.replace(tmp, target)
        return x, y

    def _class_weights(self) -> dict | None:
        if not self.config.class_weights or self.task.label_sets:  # label-set tasks weigh classes in their loss
            return None
        return class_weights_from_counts(self.dataset.splits["train"].counts(self.dataset.num_classes))

    # -- output --

    def _finish(self) -> dict:
        config, run, dataset = self.config, self.run_dir, self.dataset
        best = run.checkpoints_dir / "best.weights.h5"
        if best.exists():
            self.model.load_weights(best)
        run.update_status(message="Evaluating on the test split…", eta_seconds=None)
        self.log("Evaluating…")
        report = evaluation.evaluate_model(self.model, self.task, dataset, config.image_size, split="test", calibrate_on="val",
                                         batch_size=max(config.batch_size, 64))
        history = run.metrics()
        best_epoch = self.state.get("best_epoch")
        best_row = next((r for r in history if r.get("epoch") == best_epoch), {})
        metrics = {
            **report.summary(),
            self.task.monitor: None if best_row.get(self.task.monitor) is None else round(best_row[self.task.monitor], 5),
            "best_epoch": best_row.get("epoch"),
            "epochs_trained": len(history),
            "train_seconds": round(self.state["train_seconds"], 1),
            "wall_seconds": round(self.wall_seconds(), 1),
        }
        card = ModelCard(
            name=config.name,
            version="",
            backbone=config.backbone,
            task=config.task,
            input_size=config.image_size,
            preprocessing=BACKBONES[config.backbone].preprocessing,
            class_names=dataset.class_names,
            dataset=_dataset_label(config.dataset),
            description=" ".join([config.description or _describe(config), *self.weights_notes]),
            metrics=metrics,
            decoding=self.task.card_decoding(report),
        )
        card = catalog.save_model(self.model, card, self.settings)
        folder = catalog.model_dir(card.name, card.version, self.settings)
        report.save(folder / TRAINING_REPORT, extra={"run_id": run.id, "config": config.to_dict()})
        (folder / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
        try:
            plot_curves(history, folder / "curves.png", self.task.monitor.removeprefix("val_"))
        except Exception as exc:  # noqa: BLE001 - a missing plot must not cost the model
            self.log(f"Could not draw curves: {exc}")
        if config.set_active:
            catalog.set_active_model(card.name, card.version, self.settings)
        self.log(f"Saved {card.ref}: test " + ", ".join(f"{k} {v:.4f}" for k, v in report.summary().items()
                                                         if isinstance(v, float)) + ".")
        return {"model_ref": card.ref, "metrics": metrics}


class _Recorder:
    """Keras callback (built lazily so importing this module stays light): metrics, checkpoints,
    LR schedule, early stopping, cancel flag, throttle, status/ETA updates."""
    def __new__(cls, trainer, phase, first_epoch, end_epoch, learning_rate):
        import keras

        class Recorder(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.cancelled = False
                self.last_epoch_done = trainer.state["epoch"]
                self._epoch_started = time.time()

            def _schedule(self, epoch: int) -> float:
                if trainer.config.lr_schedule == "constant" or end_epoch - first_epoch <= 1:
                    return learning_rate
                progress = (epoch - first_epoch) / (end_epoch - first_epoch)
                return learning_rate * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))

            def on_epoch_begin(self, epoch, logs=None):
                self.model.optimizer.learning_rate.assign(self._schedule(epoch))
                self._epoch_started = time.time()
                self._epoch = epoch

            def on_train_batch_end(self, batch, logs=None):
                if trainer.config.throttle_seconds:
                    time.sleep(trainer.config.throttle_seconds)
                if trainer.run_dir.cancel_requested():
                    self.cancelled = True
                    self.model.stop_training = True
                    return
                steps = self.params.get("steps") or 0
                elapsed = time.time() - self._epoch_started
                finished = trainer.state["epoch"]
                eta = eta_seconds(trainer.state["train_seconds"] / finished if finished else None, elapsed,
                                  batch + 1, steps, trainer.config.total_epochs - self._epoch - 1)
                trainer.run_dir.report_progress(
                    step=batch + 1, steps_per_epoch=steps, eta_seconds=_round(eta),
                    message=f"{phase.replace('_', '-')}: epoch {self._epoch + 1}/{trainer.config.total_epochs}",
                )

            def on_epoch_end(self, epoch, logs=None):
                if self.cancelled:  # a partial epoch is not recorded: resume redoes it
                    return
                seconds = time.time() - self._epoch_started
                state = trainer.state
                state["train_seconds"] += seconds
                row = {"epoch": epoch + 1, "phase": phase, "lr": float(self._schedule(epoch)),
                       "seconds": round(seconds, 2), "time": runs.now()}
                row.update({k: float(v) for k, v in (logs or {}).items() if np.isscalar(v) or np.ndim(v) == 0})
                row.pop("learning_rate", None)
                _save_weights(trainer.model, trainer.run_dir.checkpoints_dir / "last.weights.h5")
                save_optimizer(self.model, trainer.run_dir.checkpoints_dir / OPTIMIZER_CHECKPOINT, phase, epoch + 1)
                value, loss = row.get(trainer.task.monitor), row.get("val_loss", float("inf"))
                best, best_loss = state["best"], state.get("best_loss", float("inf"))
                if value is not None and (best is None or value > best or (value == best and loss < best_loss)):
                    state["best"], state["best_loss"], state["best_epoch"], state["wait"] = value, loss, epoch + 1, 0
                    _save_weights(trainer.model, trainer.run_dir.checkpoints_dir / "best.weights.h5")
                else:
                    state["wait"] += 1
                state["epoch"] = epoch + 1
                state["last_row"] = row
                state["wall_seconds"] = trainer.wall_seconds()
                self.last_epoch_done = epoch + 1
                # Weights, then state, then the metrics line: a kill anywhere in between leaves the
                # state pointing at weights that exist; a missing line is restored from the state.
                trainer.run_dir.save_training_state(state)
                trainer.run_dir.append_metrics(row)
                patience = trainer.config.early_stopping_patience
                stop = bool(patience) and state["wait"] >= patience
                if stop:
                    self.model.stop_training = True
                    trainer.log(f"Early stopping after epoch {epoch + 1}: no better {trainer.task.monitor} for {patience} epochs.")
                remaining = 0 if stop else trainer.config.total_epochs - epoch - 1
                trainer.run_dir.update_status(
                    epoch=epoch + 1, phase=phase, step=0, best_val_accuracy=state["best"],
                    eta_seconds=_round(state["train_seconds"] / state["epoch"] * remaining),
                    train_seconds=round(state["train_seconds"], 1), epoch_seconds=round(seconds, 2),
                )

        return Recorder()


# -- Helpers ---------------------------------------------------------------------------------------


def _tensorboard_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def _backbone_layer(model):
    from imgrec.modeling.build import BACKBONE_LAYER_NAME  # Keras loads only in the training worker

    try:
        return model.get_layer(BACKBONE_LAYER_NAME)
    except ValueError:
        return None


def cut_layer(backbone, top_layers: int) -> str | None:
    """The backbone layer nearest ``top_layers`` from the top whose single input closes the graph above
    it (a block boundary), so the layers above can run on cached activations; None if there is none."""
    import keras

    layers = backbone.layers
    start = len(layers) - top_layers
    if top_layers <= 0 or start <= 1:
        return None
    for index in sorted(range(1, len(layers) - 1), key=lambda i: (abs(i - start), -i)):
        layer = layers[index]
        if isinstance(layer.input, (list, tuple)):
            continue
        try:
            keras.Model(layer.input, backbone.output)
        except Exception:  # noqa: BLE001 - not a closed sub-graph: try the next candidate
            continue
        return layer.name
    return None


def set_trainable(backbone, top_layers: int) -> int:
    """Freeze the backbone except its top ``top_layers`` layers; BatchNormalization always stays frozen
    (and the model calls the backbone with ``training=False``, so BN also stays in inference mode).
    Returns how many layers are trainable."""
    import keras

    if top_layers <= 0:
        backbone.trainable = False
        return 0
    backbone.trainable = True
    cut = max(len(backbone.layers) - top_layers, 0)
    count = 0
    for index, layer in enumerate(backbone.layers):
        layer.trainable = index >= cut and not isinstance(layer, keras.layers.BatchNormalization)
        count += layer.trainable
    return count


def _cacheable_views(augment: AugmentConfig) -> list[str] | None:
    """Embedding views that reproduce the augmentation exactly: none, or flip only (two views)."""
    if not augment.enabled:
        return ["identity"]
    if augment.flip and all(getattr(augment, f.name) == 0 for f in fields(augment) if f.name != "flip"):
        return ["identity", "flip"]
    return None


def class_weights_from_counts(counts) -> dict[int, float]:
    """Inverse-frequency weights normalised to mean 1 over present classes: n / (k * count)."""
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    total, k = counts[present].sum(), present.sum()
    return {int(i): (float(total / (k * c)) if c > 0 else 0.0) for i, c in enumerate(counts)}


def _save_weights(model, path: Path) -> None:
    """Write to a temp file and rename, so a kill mid-write never corrupts the last good checkpoint."""
    tmp = path.with_name(f".{path.name[: -len('.weights.h5')]}-tmp.weights.h5")
    model.save_weights(tmp)
    os.replace(tmp, path)


def save_optimizer(fit_model, path: Path, phase: str, epoch: int) -> None:
    """Adam's step count and moments after ``epoch``, so a resumed run continues the same optimisation."""
    arrays = {f"v{i}": np.asarray(variable) for i, variable in enumerate(fit_model.optimizer.variables)}
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:  # a file object: np.savez would otherwise append ".npz" to the name
        np.savez(handle, phase=phase, epoch=epoch, **arrays)
    os.replace(tmp, path)


def restore_optimizer(fit_model, path: Path, phase: str, epoch: int) -> int | None:
    """Load the state saved after ``epoch`` of ``phase`` into the compiled model's optimizer; the step
    restored, or None (optimizer untouched) when there is none or it does not fit this model."""
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as saved:
        if str(saved["phase"]) != phase or int(saved["epoch"]) != epoch:
            return None  # e.g. killed between the weights and the optimizer checkpoint
        optimizer = fit_model.optimizer
        if not optimizer.built:
            optimizer.build(fit_model.trainable_variables)
        arrays = [saved[f"v{i}"] for i in range(len(optimizer.variables)) if f"v{i}" in saved]
        shapes = [tuple(variable.shape) for variable in optimizer.variables]
        if len(saved.files) - 2 != len(shapes) or [a.shape for a in arrays] != shapes:
            return None
    for variable, array in zip(optimizer.variables, arrays):
        variable.assign(array)
    return int(optimizer.iterations)


# Batches of a fresh epoch before its own pace is trusted for an ETA (the first ones include tracing).
MIN_ETA_STEPS = 5


def eta_seconds(mean_epoch_seconds: float | None, elapsed: float, steps_done: int, steps: int,
                epochs_after: int) -> float | None:
    """Seconds left: the rest of this epoch and ``epochs_after`` more. Paced by the finished epochs' mean
    (kept in the training state, so a resume does not start from its slow first batches); before any
    epoch finished, by this epoch's own pace once ``MIN_ETA_STEPS`` batches ran; else unknown."""
    if mean_epoch_seconds:
        per_epoch = float(mean_epoch_seconds)
    elif steps and steps_done >= min(MIN_ETA_STEPS, steps):
        per_epoch = elapsed / steps_done * steps
    else:
        return None
    return _round(max(per_epoch - elapsed, 0.0) + per_epoch * max(epochs_after, 0))


def _round(value):
    return None if value is None or not np.isfinite(value) else round(float(value), 1)


def _dataset_label(dataset: str) -> str:
    return BUILTIN[dataset].split(" (")[0] if dataset in BUILTIN else Path(dataset).name


def _describe(config: RunConfig) -> str:
    parts = [f"{config.backbone} at {config.image_size[0]}x{config.image_size[1]}",
             f"head {config.epochs} epochs at lr {config.learning_rate:g}"]
    if config.fine_tune_epochs and config.backbone != "small_cnn":
        parts.append(f"fine-tune top {config.fine_tune_layers} layers {config.fine_tune_epochs} epochs "
                     f"at lr {config.fine_tune_learning_rate:g}")
    if config.augment.enabled:
        on = [f.name for f in fields(config.augment) if getattr(config.augment, f.name)]
        parts.append("augmentation: " + ", ".join(on))
    parts.append(f"loss {config.loss}" + (f" (label smoothing {config.label_smoothing:g})" if config.label_smoothing else ""))
    return "Trained with imgrec: " + "; ".join(parts) + "."


def plot_curves(history: list[dict], path: Path, score: str = "accuracy") -> None:
    """Loss and the ``score`` metric per epoch (train and validation) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, metric in zip(axes, ("loss", score)):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = [r.get(prefix + metric) for r in history]
            if any(v is not None for v in values):
                ax.plot(epochs, values, style, marker="o", label=(prefix or "train_") + metric)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def main_worker(run_id: str, settings: Settings) -> int:
    """``python -m imgrec train --run RUN_ID``: execute (or resume) an existing run in this process."""
    run = runs.get_run(run_id, settings)
    status = execute_run(run, settings)
    print(json.dumps({k: status.get(k) for k in ("run_id", "state", "model_ref", "message")}), file=sys.stdout)
    return 0 if status.get("state") in (runs.COMPLETED, runs.CANCELLED) else 1
