"""Anytime prediction: stop each sample's stream once a confidence rule holds."""

import difflib
import math

import keras
import numpy as np

RULES = ("max_probability", "margin")


@keras.saving.register_keras_serializable(package="keras_spikformer")
class EarlyExit:
    """When a sample may stop: a confidence rule on its running mean logits.

    After each step `t >= min_steps` the softmax `p` of the sample's running
    mean logits (what the multi-step model would output if the sequence
    ended at `t`) is tested:
    - `"max_probability"`: `max(p) >= threshold`;
    - `"margin"`: top-1 minus top-2 probability `>= threshold`.

    Args:
        rule: `"max_probability"` or `"margin"`.
        threshold: float in (0, 1].
        min_steps: int >= 1, the steps every sample runs at least.

    Example:
    >>> rule = EarlyExit("margin", 0.5, min_steps=2)
    >>> EarlyExit.get("margin:0.5") == EarlyExit("margin", 0.5)
    True
    """

    def __init__(self, rule="max_probability", threshold=0.9, min_steps=1):
        if rule not in RULES:
            close = difflib.get_close_matches(str(rule), RULES, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"Unknown early-exit rule {rule!r}; use one of {', '.join(RULES)}.{hint}"
            )
        if isinstance(threshold, bool) or not isinstance(
            threshold, (int, float, np.integer, np.floating)
        ):
            raise ValueError(
                f"The early-exit threshold must be a number in (0, 1]; got {threshold!r}."
            )
        threshold = float(threshold)
        if not (0.0 < threshold <= 1.0):  # NaN fails too
            raise ValueError(
                f"The early-exit threshold must be in (0, 1] (a softmax probability); "
                f"got {threshold}: no sample could ever exit above 1."
                if threshold > 1
                else f"The early-exit threshold must be in (0, 1]; got {threshold}."
            )
        if (
            isinstance(min_steps, bool)
            or not isinstance(min_steps, (int, np.integer))
            or min_steps < 1
        ):
            raise ValueError(f"`min_steps` must be an int >= 1; got {min_steps!r}.")
        self.rule = rule
        self.threshold = threshold
        self.min_steps = int(min_steps)

    @classmethod
    def get(cls, spec):
        """An `EarlyExit` from a rule, a float (max probability), a string
        `"rule:threshold"` (e.g. `"margin:0.3"`) or a config dict.

        Example:
        >>> EarlyExit.get(0.9).rule
        'max_probability'
        """
        if isinstance(spec, cls):
            return spec
        if isinstance(spec, dict):
            return cls.from_config(spec)
        if isinstance(spec, str):
            rule, sep, value = spec.partition(":")
            try:
                threshold = float(value)
            except ValueError:
                raise ValueError(
                    f"Early exit {spec!r}: expected 'rule:threshold', e.g. "
                    f"'margin:0.3' or 'max_probability:0.9' (rules: {', '.join(RULES)})."
                ) from None
            return cls(rule.strip(), threshold)
        if isinstance(spec, (int, float, np.integer, np.floating)) and not isinstance(
            spec, bool
        ):
            return cls("max_probability", spec)
        raise ValueError(
            f"`early_exit` must be an EarlyExit, a threshold in (0, 1], a string like "
            f"'margin:0.3' or a config dict; got {spec!r}."
        )

    def confidence(self, logits):
        """The rule's score of each row of `logits` `[batch, classes]` (numpy)."""
        z = np.asarray(logits, dtype="float64")
        z = z - z.max(axis=-1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=-1, keepdims=True)
        if self.rule == "max_probability":
            return p.max(axis=-1)
        if p.shape[-1] < 2:
            return np.ones(p.shape[:-1])
        top2 = np.partition(p, -2, axis=-1)[..., -2:]
        return top2[..., 1] - top2[..., 0]

    def exits(self, mean_logits, step):
        """Which samples may stop after `step` (1-based): bool `[batch]`."""
        if step < self.min_steps:
            return np.zeros(np.shape(mean_logits)[0], dtype=bool)
        return self.confidence(mean_logits) >= self.threshold

    def __eq__(self, other):
        return isinstance(other, EarlyExit) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash(tuple(self.get_config().items()))

    def __repr__(self):
        return f"EarlyExit({self.rule!r}, {self.threshold}, min_steps={self.min_steps})"

    def describe(self):
        """Short label, e.g. `"margin >= 0.3"`."""
        more = f", min {self.min_steps} steps" if self.min_steps > 1 else ""
        return f"{self.rule} >= {self.threshold:g}{more}"

    def get_config(self):
        return {
            "rule": self.rule,
            "threshold": self.threshold,
            "min_steps": self.min_steps,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class ExitTracker:
    """Per-sample exit bookkeeping for one batch under one rule.

    Feed the running mean logits after each step to `update`; a sample's
    logits freeze at the first step its rule holds. `finish` gives the
    samples that never exited the last step's logits.

    Args:
        early_exit: an `EarlyExit`.
        size: the batch's real samples (padding rows are left out).
    """

    def __init__(self, early_exit, size):
        self.early_exit = early_exit
        self.size = size
        self.logits = None
        self.steps = np.zeros(size, dtype="int32")

    @property
    def done(self):
        return bool(np.all(self.steps > 0))

    def update(self, mean_logits, step):
        mean = np.asarray(mean_logits)[: self.size]
        if self.logits is None:
            self.logits = np.zeros_like(mean)
        newly = (self.steps == 0) & self.early_exit.exits(mean, step)
        self.logits[newly] = mean[newly]
        self.steps[newly] = step

    def finish(self, mean_logits, step):
        mean = np.asarray(mean_logits)[: self.size]
        left = self.steps == 0
        self.logits[left] = mean[left]
        self.steps[left] = step
        return self.logits, self.steps


def stream_steps(stream, batch, num_steps, frames):
    """Resets `stream` and yields `(t, mean_logits numpy)` for t = 1..num_steps.

    Args:
        stream: a `Stream` of `batch`'s batch size.
        batch: model-ready `[B, H, W, C]` images (repeated each step) or
            `[B, T, H, W, 2]` frames (frame `t - 1` at step `t`).
        num_steps: int, steps to run (the caller may stop early).
        frames: whether `batch` holds frames.
    """
    stream.reset_state()
    for t in range(num_steps):
        out = stream.step(batch[:, t] if frames else batch)
        yield t + 1, keras.ops.convert_to_numpy(out["mean_logits"])


def padded_batches(x, batch_size):
    """Yields `(batch padded to batch_size with zeros, real rows)`."""
    for start in range(0, len(x), batch_size):
        batch = np.asarray(x[start : start + batch_size], dtype="float32")
        size = len(batch)
        if size < batch_size:
            pad = np.zeros((batch_size - size,) + batch.shape[1:], batch.dtype)
            batch = np.concatenate([batch, pad])
        yield batch, size


def prepare_inputs(model, x, num_steps):
    """Preprocessed inputs, whether they are frames, and the steps to run.

    Raises a `ValueError` naming the fix for inputs the stream cannot take.
    """
    from keras_spikformer.models.image_inputs import check_model_inputs

    frames = len(model.inputs[0].shape) == 5
    model_steps = int(model.backbone.num_timesteps)
    if num_steps is None:
        num_steps = model_steps
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)):
        raise ValueError(f"`num_steps` must be an int >= 1; got {num_steps!r}.")
    if num_steps < 1:
        raise ValueError(f"`num_steps` must be an int >= 1; got {num_steps}.")
    x = model.preprocess(x)
    if not hasattr(x, "shape"):
        raise ValueError(
            "Early exit takes an array of images (or event frames [N, T, H, W, 2]); "
            f"got {type(x).__name__}."
        )
    if not frames:
        check_model_inputs(model, x)
        return np.asarray(x, dtype="float32"), False, int(num_steps)
    expected = tuple(model.inputs[0].shape[2:])
    shape = tuple(x.shape)
    if len(shape) != 5 or shape[2:] != expected or shape[0] == 0:
        raise ValueError(
            f"{model.name} streams event frames [N, T, {', '.join(map(str, expected))}]"
            f"; got shape {shape}."
        )
    if shape[1] < num_steps:
        raise ValueError(
            f"The event inputs hold {shape[1]} frames but {num_steps} steps were "
            f"asked; pass num_steps <= {shape[1]} (one frame per step)."
        )
    return np.asarray(x, dtype="float32"), True, int(num_steps)


def anytime_predict(
    model, x, early_exit, batch_size=32, num_steps=None, verbose="auto"
):
    """Logits with early exit: each sample stops once `early_exit` holds.

    Each batch runs through a stream (`model.stream`) one step at a time;
    after each step the rule is tested on every sample's running mean
    logits, a sample's logits freeze at its exit step, and the batch stops
    as soon as all its samples have exited. Samples that never exit get the
    logits of the last step.

    Args:
        model: a classifier of this package that can stream.
        x: raw images (preprocessed as by `predict`), model-ready images
            `[N, H, W, C]` (repeated each step), or event frames
            `[N, T, H, W, 2]` for frame models (frame `t` at step `t`).
        early_exit: an `EarlyExit`, a float (max probability threshold), a
            string like `"margin:0.3"` or a config dict.
        batch_size: int, the stream's batch size (at most N); the last
            partial batch is padded and the padding dropped.
        num_steps: int, steps at most; defaults to the model's
            `num_timesteps`.
        verbose: `"auto"` (a progress bar when there is more than one
            batch), 0 or 1.

    Returns:
        `(logits, steps)`: float32 `[N, classes]` and int32 `[N]` numpy arrays.

    Example:
    >>> logits, steps = anytime_predict(model, images, "margin:0.5")
    """
    rule = EarlyExit.get(early_exit)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise ValueError(f"`batch_size` must be an int >= 1; got {batch_size!r}.")
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be an int >= 1; got {batch_size}.")
    x, frames, num_steps = prepare_inputs(model, x, num_steps)
    if rule.min_steps > num_steps:
        raise ValueError(
            f"min_steps={rule.min_steps} is more than the {num_steps} steps run: no "
            f"sample could exit early; lower min_steps or raise num_steps."
        )
    count = len(x)
    batch_size = int(min(batch_size, count))
    stream = model.stream(batch_size)
    batches = math.ceil(count / batch_size)
    show = batches > 1 if verbose == "auto" else bool(verbose)
    progress = keras.utils.Progbar(count, unit_name="sample") if show else None
    logits, steps = [], []
    for batch, size in padded_batches(x, batch_size):
        tracker = ExitTracker(rule, size)
        for t, mean in stream_steps(stream, batch, num_steps, frames):
            tracker.update(mean, t)
            if tracker.done:
                break
        batch_logits, batch_steps = tracker.finish(mean, t)
        logits.append(batch_logits)
        steps.append(batch_steps)
        if progress is not None:
            progress.add(size, [("mean_steps", float(np.mean(batch_steps)))])
    return (
        np.concatenate(logits).astype("float32"),
        np.concatenate(steps).astype("int32"),
    )


def predict_with_early_exit(model, x, early_exit, args, fused, kwargs):
    """`ImageClassifier.predict(x, ..., early_exit=...)`: checks the `predict`
    arguments that apply (`batch_size`, `verbose`, `num_steps`), then runs
    `anytime_predict`."""
    if fused:
        raise ValueError(
            "predict(fused=True) and early_exit cannot be combined: the stream "
            "runs the unfused model. Leave fused out."
        )
    names = ("batch_size", "verbose")
    if len(args) > len(names):
        raise ValueError(
            "predict(..., early_exit=...) takes batch_size and verbose (and "
            f"num_steps) only; got {len(args)} positional arguments."
        )
    options = dict(zip(names, args, strict=False))
    unknown = sorted(set(kwargs) - {"batch_size", "verbose", "num_steps"})
    if unknown:
        raise ValueError(
            f"predict(..., early_exit=...) does not take {', '.join(unknown)}: "
            "only batch_size, verbose and num_steps apply to the stream."
        )
    options.update(kwargs)
    if options.get("batch_size") is None:
        options["batch_size"] = 32
    return anytime_predict(model, x, early_exit, **options)
