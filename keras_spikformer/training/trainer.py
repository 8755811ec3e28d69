"""Train and evaluate presets: the engine behind `keras-spikformer train | evaluate`."""

import os
import shutil
import time
import warnings

import keras

from keras_spikformer import presets
from keras_spikformer.data.registry import load_dataset
from keras_spikformer.io_utils import write_json
from keras_spikformer.training.callbacks import MixupOffCallback
from keras_spikformer.training.distribute import distribution_for
from keras_spikformer.training.model_builder import build_model
from keras_spikformer.training.recipe import Recipe
from keras_spikformer.training.run_setup import (
    BACKUP_DIR,
    METRICS_FILE,
    check_run_directory,
    check_same_run,
    check_train_arguments,
    describe_schedule,
    fit_schedule,
    write_run_file,
)
from keras_spikformer.training.torch_threads import leave_a_core_for_input

SHUFFLE_BUFFER_BYTES = 512 * 2**20  # decoded in-memory examples (digits, events)


# Config keys that do not change the weights a run trains.
_NOT_ARCHITECTURE = ("name", "trainable", "num_classes")


def _jit_compile():
    return keras.backend.backend() in ("tensorflow", "jax")


def preprocessors(recipe, model, seed, augment):
    """`(train_augment or None, eval_map)` for the model's kind of input."""
    import tensorflow as tf

    from keras_spikformer.data import augment as aug

    num_classes = model.num_classes
    if getattr(model.backbone, "encoding", "direct") == "frames":  # Meta: images only
        train_aug = (
            aug.make_event_train_augment(recipe, num_classes, seed=seed)
            if augment
            else None
        )

        def eval_map(frames, labels):
            return frames, tf.one_hot(labels, num_classes)

        return train_aug, eval_map
    *size, channels = model.backbone.image_shape
    train_aug = (
        aug.make_train_augment(recipe, size, num_classes, seed=seed, channels=channels)
        if augment
        else None
    )
    eval_map = aug.make_eval_preprocess(recipe, size, num_classes, channels=channels)
    return train_aug, eval_map


def _train_pipeline(data, batch_size, seed, start_epoch, epochs, preprocess):
    """Batched, preprocessed training batches for epochs `start_epoch..epochs-1`.

    The order of epoch `e` depends only on `(seed, e)`, so a resumed run sees
    the same batches as an uninterrupted one.
    """
    import tensorflow as tf

    steps = data.num_train // batch_size
    if getattr(data, "records", None) is not None:  # streamed TFDS / folder
        from keras_spikformer.data.image_pipeline import train_batches

        return train_batches(
            data.records.train, preprocess, batch_size, seed, start_epoch, epochs, steps
        )
    # In memory: a shuffle buffer of at most SHUFFLE_BUFFER_BYTES decoded examples.
    example_bytes = sum(
        max(1, spec.shape.num_elements() or 1) * spec.dtype.size
        for spec in tf.nest.flatten(data.train.element_spec)
    )
    buffer = max(1, min(data.num_train, SHUFFLE_BUFFER_BYTES // example_bytes))

    def epoch(e):
        order = data.train.shuffle(
            buffer,
            seed=seed * 10007 + e,
            reshuffle_each_iteration=False,
        )
        return order.batch(batch_size, drop_remainder=True).take(steps)

    train = _concatenate([epoch(e) for e in range(start_epoch, epochs)])
    return train.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)


def _test_pipeline(data, batch_size, eval_map, drop_remainder=False):
    """Evaluation batches: streamed with timm's eval transform, or in memory."""
    if getattr(data, "records", None) is not None and hasattr(
        eval_map, "example_transform"
    ):
        from keras_spikformer.data.image_pipeline import eval_batches

        return eval_batches(data.records.test, eval_map, batch_size, drop_remainder)
    test_ds = data.test.batch(batch_size, drop_remainder=drop_remainder)
    return test_ds.map(eval_map).prefetch(2)


def _concatenate(datasets):
    """Concatenates as a balanced tree (depth log2(n), not n)."""
    if not datasets:
        raise ValueError(
            "Nothing left to train: the run already reached its last epoch."
        )
    while len(datasets) > 1:
        pairs = [datasets[i : i + 2] for i in range(0, len(datasets), 2)]
        datasets = [p[0].concatenate(p[1]) if len(p) == 2 else p[0] for p in pairs]
    return datasets[0]


def _load_for(config, dataset, data_dir, cache_dir, split_seed):
    """`load_dataset` shaped for a preset's config."""
    return load_dataset(
        dataset, data_dir, config["image_shape"], config["num_timesteps"], cache_dir,
        split_seed=split_seed,
    )  # fmt: skip


def train(
    preset,
    dataset,
    output,
    data_dir=None,
    epochs=None,
    batch_size=None,
    resume=False,
    dtype=None,
    weights="none",
    num_classes=None,
    seed=0,
    learning_rate=None,
    augment=True,
    cache_dir=None,
    callbacks=(),
    distribute="none",
    verbose=1,
    split_seed=None,
):
    """Trains `preset` on `dataset` with the preset's recipe and writes the results.

    Writes `output/model.keras`, `output/preset/` (a `from_preset` directory),
    `output/log.csv`, `output/tensorboard/` and, last, `output/metrics.json`
    (`test_accuracy`, `test_loss`, `epochs`, `seconds`, ...). The training state
    is backed up every epoch under `output/backup/`; a killed run continues
    where it stopped with `resume=True`.

    Args:
        preset: zoo name or preset directory.
        dataset: see `keras_spikformer.data.registry.load_dataset`.
        output: run directory.
        data_dir: where the dataset lies (None: its default folder; missing
            public datasets are downloaded, see `load_dataset`).
        epochs: epochs in total; the recipe's schedule (warm-up, cosine,
            cooldown, MixUp switch-off) is scaled to fit (`fit_schedule`).
        batch_size, learning_rate: override the recipe.
        resume: continue an interrupted run in `output`.
        dtype: dtype policy, e.g. `"mixed_bfloat16"`.
        weights: `"none"`, `"preset"` or a path (see `build_model`).
        num_classes: a new head, for datasets whose class count differs.
        seed: seeds weights, data order and augmentation.
        augment: apply the recipe's training augmentation.
        cache_dir: cache of event frames.
        callbacks: extra Keras callbacks.
        distribute: `"none"`, `"data_parallel"` or `"model_parallel"`: the
            engine of the active backend (see `training.distribute`); the
            global batch `batch_size` is split over the replicas.
        verbose: Keras progress-bar verbosity.
        split_seed: CIFAR10-DVS's split (None: the shipped one).

    Returns:
        The metrics dict.

    Example:
    >>> train("spikformer_tiny_digits", "digits", "runs/digits")
    """
    check_train_arguments(epochs, batch_size, learning_rate, num_classes)
    output, backup, start_epoch = check_run_directory(output, resume)
    keras.utils.set_random_seed(seed)
    recipe = Recipe.from_preset(preset)
    if learning_rate is not None:
        recipe = recipe.replace(learning_rate=learning_rate)
    if epochs is not None:  # N epochs in total, the whole schedule scaled
        recipe = fit_schedule(recipe, epochs)
    batch_size = batch_size or recipe.global_batch_size
    config = presets.read_config(presets.resolve(preset))
    run = {
        "preset": str(preset),
        "num_classes": num_classes or config["num_classes"],
        "config": {k: v for k, v in config.items() if k not in _NOT_ARCHITECTURE},
    }
    check_same_run(output, resume, run)
    data = _load_for(config, dataset, data_dir, cache_dir, split_seed)
    _check_classes(data, config, num_classes, dataset)
    steps = data.num_train // batch_size
    if steps < 1:
        raise ValueError(
            f"{dataset} has {data.num_train} training examples, fewer than one batch of "
            f"{batch_size}; lower --batch-size."
        )
    plan = distribution_for(distribute, global_batch_size=batch_size)
    leave_a_core_for_input()  # torch on CPU: its workers spin beside tf.data
    total_epochs = recipe.total_epochs()
    with plan.scope():
        model = plan.prepare(
            build_model(preset, weights, num_classes, dtype, **recipe.model_options())
        )
        model.apply_preprocessor = False  # the pipeline below preprocesses
        train_aug, eval_map = preprocessors(recipe, model, seed, augment)
        train_ds = _train_pipeline(
            data, batch_size, seed, start_epoch, total_epochs, train_aug or eval_map
        )
        # Sharded batches must split evenly over the replicas.
        test_ds = _test_pipeline(data, batch_size, eval_map, plan.num_replicas > 1)
        model.compile(
            optimizer=recipe.make_optimizer(
                steps_per_epoch=steps, global_batch_size=batch_size, model=model
            ),
            loss=recipe.make_loss(),
            metrics=recipe.make_metrics(),
            jit_compile=_jit_compile() and plan.jit_compile,
        )
        output.mkdir(parents=True, exist_ok=True)
        write_run_file(output, run)
        cbs = [
            keras.callbacks.BackupAndRestore(
                str(backup), double_checkpoint=True, delete_checkpoint=False
            ),
            keras.callbacks.CSVLogger(str(output / "log.csv"), append=resume),
            keras.callbacks.TensorBoard(str(output / "tensorboard"), write_graph=False),
            *(
                [MixupOffCallback(train_aug)]
                if getattr(train_aug, "mixup_off_epoch", None)
                else []
            ),
            *callbacks,
        ]
        if verbose:
            print(describe_schedule(recipe, start_epoch))
        started = time.time()
        model.fit(
            train_ds,
            epochs=total_epochs,
            steps_per_epoch=steps,
            validation_data=test_ds,
            callbacks=cbs,
            verbose=verbose,
        )
        seconds = time.time() - started
        test_loss, test_accuracy = model.evaluate(test_ds, verbose=0)
    metrics = {
        "preset": str(preset),
        "dataset": dataset,
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        "epochs": total_epochs,
        "resumed_from_epoch": start_epoch,
        "seconds": round(seconds, 1),
        "batch_size": batch_size,
        "num_train": data.num_train,
        "num_test": data.num_test,
        "seed": seed,
        "backend": keras.backend.backend(),
        "distribution": plan.describe(),
        "recipe": recipe.describe(steps_per_epoch=steps, global_batch_size=batch_size),
    }
    skipped = data.input_report() if hasattr(data, "input_report") else {}
    if any(skipped.values()):
        metrics["skipped_inputs"] = skipped
        warnings.warn(f"Inputs skipped during training: {skipped}", stacklevel=2)
    _save_outputs(model, output, metrics, recipe)
    return metrics


def _check_classes(data, config, num_classes, dataset):
    if data.num_classes < 2:
        raise ValueError(
            f"{dataset} has {data.num_classes} class; a classifier needs at least 2 "
            "(for --dataset folder: one sub-folder of images per class)."
        )
    want = num_classes or config["num_classes"]
    if data.num_classes != want:
        raise ValueError(
            f"{dataset} has {data.num_classes} classes but the model has {want}; pass "
            f"--num-classes {data.num_classes} (num_classes=...) for a new head."
        )


def _save_outputs(model, output, metrics, recipe=None):
    """Model file, preset, then metrics.json last: its presence marks a finished run."""
    model.apply_preprocessor = True
    if recipe is not None:
        model.preset_recipe = recipe.to_dict()
    partial = output / "model.partial.keras"
    model.save(partial)
    os.replace(partial, output / "model.keras")
    model.save_to_preset(output / "preset", overwrite=True)
    write_json(output / METRICS_FILE, metrics)
    shutil.rmtree(output / BACKUP_DIR, ignore_errors=True)


def evaluate(
    preset,
    dataset,
    data_dir=None,
    weights="preset",
    batch_size=None,
    cache_dir=None,
    verbose=1,
    split_seed=None,
):
    """Test accuracy and loss of a preset (with its weights by default) on `dataset`.

    Example:
    >>> evaluate("spikformer_tiny_digits", "digits")["test_accuracy"]
    """
    recipe = Recipe.from_preset(preset)
    batch_size = batch_size or recipe.global_batch_size
    config = presets.read_config(presets.resolve(preset))
    data = _load_for(config, dataset, data_dir, cache_dir, split_seed)
    _check_classes(data, config, None, dataset)
    model = build_model(preset, weights, **recipe.model_options())
    model.apply_preprocessor = False  # the pipeline below preprocesses
    _, eval_map = preprocessors(recipe, model, 0, augment=False)
    test_ds = _test_pipeline(data, batch_size, eval_map)
    model.compile(
        loss=recipe.make_loss(),
        metrics=recipe.make_metrics(),
        jit_compile=_jit_compile(),
    )
    started = time.time()
    loss, accuracy = model.evaluate(test_ds, verbose=verbose)
    return {
        "preset": str(preset),
        "dataset": dataset,
        "test_accuracy": float(accuracy),
        "test_loss": float(loss),
        "num_test": data.num_test,
        "seconds": round(time.time() - started, 1),
    }
