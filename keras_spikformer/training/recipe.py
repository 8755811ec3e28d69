"""The paper's training recipe (a preset's `recipe.json`) as Keras objects."""

import dataclasses
import json
from pathlib import Path

import keras

from keras_spikformer import presets
from keras_spikformer.training.lamb import TimmLamb
from keras_spikformer.training.recipe_checks import check_recipe_values
from keras_spikformer.training.schedules import WarmupCosineDecay

# Keras names of the variables timm keeps out of weight decay (its rule: every
# 1-d parameter and every bias). Batch norm: gamma/beta; Dense/Conv: bias.
NO_DECAY_NAMES = ("bias", "gamma", "beta")

_SUPPORTED_SCALING = ("none", "linear")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A preset's training recipe: optimizer, schedule, loss and augmentation.

    Loaded from a preset's `recipe.json` (the reference configuration files);
    the `augment`, `normalize`, `eval` and `frames` sections are kept as dicts
    and read by `keras_spikformer.data.augment`. Unknown top-level keys are
    kept in `extras`. Every number (sections included) must be finite and in
    range, or a `ValueError` names the file, the field and the range
    (`training.recipe_checks`).

    Args:
        learning_rate: float. Peak rate at `global_batch_size`.
        weight_decay: float. AdamW decoupled weight decay.
        epochs: int. Cosine epochs (timm's `epochs`); training runs
            `epochs + cooldown_epochs`.
        global_batch_size: int. Batch the reference trained with.
        optimizer: str, `"adamw"` or `"lamb"` (timm's `Lamb` as
            `training.lamb.TimmLamb`: global gradient-norm clip 1.0, weight
            decay inside the trust ratio, no trust ratio for 1-d parameters;
            the Spike-driven Transformer families' recipes).
        trust_clip: bool, defaults to `False`. LAMB only: cap the trust ratio
            at 1 (Meta-SpikeFormer's `Lamb(trust_clip=True)`).
        schedule: str, `"cosine"` (the only one supported).
        min_learning_rate: float, defaults to `1e-5`.
        warmup_epochs: int, defaults to `0`.
        warmup_learning_rate: float or `None`. Rate at step 0; `None` uses
            `min_learning_rate` (the CIFAR and DVS references warm up from
            1e-5, their `min_lr`).
        warmup_prefix: bool, defaults to `False`. `True` is the MAE-style
            schedule (QKFormer's ImageNet recipe): per-step linear warm-up,
            then a half cycle of cosine over the remaining
            `epochs - warmup_epochs` epochs (`epochs` includes the warm-up).
        cooldown_epochs: int, defaults to `0`. Epochs at `min_learning_rate`.
        lr_scaling_rule: str, defaults to `"none"`. `"none"` or `"linear"`,
            optionally followed by `": comment"`.
        mixed_precision: bool, defaults to `False`.
        label_smoothing: float, defaults to `0.0`.
        augment, normalize, eval, frames: dicts or `None`, the recipe sections.
        extras: dict, unknown keys.
        source: str or `None`, where the recipe was read from.

    Example:
    ```python
    recipe = Recipe.from_preset("spikformer_4_384_cifar10").replace(epochs=50)
    optimizer = recipe.make_optimizer(steps_per_epoch=390, model=model)
    model.compile(optimizer=optimizer, loss=recipe.make_loss())
    print(recipe.describe())
    ```
    """

    learning_rate: float
    weight_decay: float
    epochs: int
    global_batch_size: int
    optimizer: str = "adamw"
    trust_clip: bool = False
    schedule: str = "cosine"
    min_learning_rate: float = 1e-5
    warmup_epochs: int = 0
    warmup_learning_rate: float | None = None
    warmup_prefix: bool = False
    cooldown_epochs: int = 0
    lr_scaling_rule: str = "none"
    mixed_precision: bool = False
    label_smoothing: float = 0.0
    augment: dict = dataclasses.field(default_factory=dict)
    normalize: dict | None = None
    eval: dict | None = None
    frames: dict | None = None
    extras: dict = dataclasses.field(default_factory=dict)
    source: str | None = dataclasses.field(default=None, compare=False)

    def __post_init__(self):
        check_recipe_values(self)  # every number finite and in range
        if self.optimizer.lower() not in ("adamw", "lamb"):
            raise ValueError(
                f"Recipe optimizer {self.optimizer!r} is not supported; only "
                "'adamw' and 'lamb' (the references') are. Fix the recipe or build "
                "the optimizer yourself."
            )
        loss = dict(self.extras.get("loss") or {"name": "cross_entropy"})
        if loss.get("name") not in ("cross_entropy", "tet"):
            raise ValueError(
                f"Recipe loss {loss!r} is not supported; use "
                '{"name": "cross_entropy"} or {"name": "tet", "lamb": 0.001}.'
            )
        if self.schedule.lower() != "cosine":
            raise ValueError(
                f"Recipe schedule {self.schedule!r} is not supported; only "
                "'cosine' (the reference's) is."
            )
        self.scaling_rule()  # validate early

    # ------------------------------------------------------------- loading
    @classmethod
    def from_dict(cls, data, source=None):
        """Builds a recipe from the `recipe.json` dictionary."""
        fields = {f.name for f in dataclasses.fields(cls)} - {"extras", "source"}
        missing = [
            k
            for k in ("learning_rate", "weight_decay", "epochs", "global_batch_size")
            if k not in data
        ]
        if missing:
            raise ValueError(
                f"Recipe {source or ''} lacks required key(s) {missing}; a "
                "recipe.json needs learning_rate, weight_decay, epochs and "
                "global_batch_size."
            )
        known = {k: v for k, v in data.items() if k in fields}
        extras = {k: v for k, v in data.items() if k not in fields}
        known.setdefault("augment", {})
        return cls(**known, extras=extras, source=source)

    @classmethod
    def from_json(cls, path):
        """Reads a `recipe.json` file."""
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"No recipe file at {path}. Pass a path to a recipe.json or use "
                "Recipe.from_preset(name)."
            )
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f), source=str(path))

    @classmethod
    def from_preset(cls, preset):
        """Reads the recipe of a zoo preset name or a preset directory."""
        directory = presets.resolve(preset)
        path = Path(directory) / presets.RECIPE_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"Preset {str(preset)!r} has no {presets.RECIPE_FILE} ({path}). "
                "Write one (see zoo/*/recipe.json) or use Recipe.from_json."
            )
        return cls.from_json(path)

    def replace(self, **changes):
        """A copy with some fields changed, e.g. `recipe.replace(epochs=50)`."""
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        """The recipe as a `recipe.json`-style dictionary."""
        out = dataclasses.asdict(self)
        out.pop("source")
        out.update(out.pop("extras"))
        return {k: v for k, v in out.items() if v is not None}

    # ------------------------------------------------------- learning rate
    def scaling_rule(self):
        """The rule's name: `"none"` or `"linear"` (comment stripped)."""
        rule = str(self.lr_scaling_rule or "none").split(":", 1)[0].strip().lower()
        if rule not in _SUPPORTED_SCALING:
            raise ValueError(
                f"Unknown lr_scaling_rule {self.lr_scaling_rule!r}; supported: "
                "'none' (keep the rate whatever the batch) and 'linear' (rate * "
                "batch / recipe batch). Fix the recipe or pass "
                "recipe.replace(lr_scaling_rule='linear')."
            )
        return rule

    def scaled_learning_rate(self, global_batch_size=None):
        """Peak rate for `global_batch_size` under the recipe's scaling rule."""
        if global_batch_size is None or global_batch_size == self.global_batch_size:
            return float(self.learning_rate)
        if int(global_batch_size) <= 0:
            raise ValueError(
                f"`global_batch_size` must be positive, got {global_batch_size!r}."
            )
        if self.scaling_rule() == "linear":
            return (
                float(self.learning_rate)
                * int(global_batch_size)
                / int(self.global_batch_size)
            )
        return float(self.learning_rate)

    def _warmup_learning_rate(self):
        if self.warmup_learning_rate is None:
            return float(self.min_learning_rate)
        return float(self.warmup_learning_rate)

    def make_schedule(self, steps_per_epoch, epochs=None, global_batch_size=None):
        """The `WarmupCosineDecay` for `steps_per_epoch` optimizer steps.

        Args:
            steps_per_epoch: int. Optimizer steps per epoch.
            epochs: int or `None`. Cosine epochs; defaults to the recipe's.
            global_batch_size: int or `None`. Batch you train with; the
                recipe's scaling rule applies when it differs.
        """
        steps_per_epoch = int(steps_per_epoch)
        if steps_per_epoch <= 0:
            raise ValueError(
                f"`steps_per_epoch` must be positive, got {steps_per_epoch!r}: "
                "use ceil(train examples / global batch size)."
            )
        epochs = int(self.epochs if epochs is None else epochs)
        # MAE style: the cosine half cycle follows the warm-up inside `epochs`.
        cosine_epochs = (
            epochs - int(self.warmup_epochs) if self.warmup_prefix else epochs
        )
        return WarmupCosineDecay(
            learning_rate=self.scaled_learning_rate(global_batch_size),
            decay_steps=max(cosine_epochs, 1) * steps_per_epoch,
            warmup_steps=int(self.warmup_epochs) * steps_per_epoch,
            warmup_learning_rate=self._warmup_learning_rate(),
            min_learning_rate=float(self.min_learning_rate),
            warmup_prefix=bool(self.warmup_prefix),
        )

    def make_optimizer(
        self, steps_per_epoch, epochs=None, global_batch_size=None, model=None
    ):
        """The recipe's AdamW or LAMB, its schedule and weight-decay exclusions.

        Biases and batch-norm `gamma`/`beta` are excluded from weight decay
        (timm excludes every 1-d parameter); pass `model` to also exclude
        any other 1-d or scalar trainable variable by identity.

        Args:
            steps_per_epoch: int. Optimizer steps per epoch.
            epochs: int or `None`. Cosine epochs; defaults to the recipe's.
            global_batch_size: int or `None`. See `make_schedule`.
            model: optional Keras model whose 1-d variables are excluded.

        Returns:
            A `keras.optimizers.AdamW` or a `TimmLamb`.
        """
        schedule = self.make_schedule(steps_per_epoch, epochs, global_batch_size)
        if self.optimizer.lower() == "lamb":
            optimizer = TimmLamb(
                learning_rate=schedule,
                weight_decay=float(self.weight_decay),
                trust_clip=bool(self.trust_clip),
            )
        else:
            optimizer = keras.optimizers.AdamW(
                learning_rate=schedule,
                weight_decay=float(self.weight_decay),
                beta_1=0.9,
                beta_2=0.999,
                epsilon=1e-8,  # timm's opt_eps (Keras' default is 1e-7)
            )
        var_list = None
        if model is not None:
            var_list = [v for v in model.trainable_variables if len(v.shape) <= 1]
        optimizer.exclude_from_weight_decay(
            var_list=var_list, var_names=list(NO_DECAY_NAMES)
        )
        return optimizer

    def total_epochs(self, epochs=None):
        """Epochs to pass to `fit`: cosine epochs plus cooldown."""
        return int(self.epochs if epochs is None else epochs) + int(
            self.cooldown_epochs
        )

    # ---------------------------------------------------------------- loss
    def make_loss(self):
        """Cross-entropy on logits with the recipe's label smoothing.

        Labels are one-hot (MixUp/CutMix mix them). Smoothing is linear, so
        smoothing mixed labels equals timm's mixing of smoothed labels. A
        recipe with `"loss": {"name": "tet", ...}` gets a `TETLoss` (it needs
        a model with per-time-step logits).
        """
        loss = self.extras.get("loss") or {}
        if loss.get("name") == "tet":
            from keras_spikformer.training.tet_loss import TETLoss

            return TETLoss(
                lamb=loss.get("lamb", 0.001),
                means=loss.get("means", 1.0),
                label_smoothing=float(self.label_smoothing),
            )
        return keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=float(self.label_smoothing)
        )

    def uses_tet(self):
        """Whether the loss is TET (it needs per-time-step logits)."""
        return (self.extras.get("loss") or {}).get("name") == "tet"

    def model_options(self):
        """Classifier arguments the loss needs: `per_step_logits=True` for TET."""
        return {"per_step_logits": True} if self.uses_tet() else {}

    def make_metrics(self):
        """Top-1 accuracy (on the time-averaged logits when the loss is TET)."""
        if self.uses_tet():
            from keras_spikformer.training.tet_loss import TimeAveragedAccuracy

            return [TimeAveragedAccuracy()]
        return ["accuracy"]

    # ---------------------------------------------------------------- text
    def describe(self, steps_per_epoch=None, global_batch_size=None):
        """Readable summary, including the effect of the lr scaling rule."""
        rule = self.scaling_rule()
        lines = [f"Recipe ({self.source or 'in memory'})"]
        lamb = self.optimizer.lower() == "lamb"
        name = (
            f"LAMB (timm{', trust clip' if self.trust_clip else ''})"
            if lamb
            else "AdamW"
        )
        lines.append(
            f"  optimizer: {name} lr {self.learning_rate:g} at global batch "
            f"{self.global_batch_size}, weight decay {self.weight_decay:g} "
            f"(not on {', '.join(NO_DECAY_NAMES)}), eps {'1e-6' if lamb else '1e-8'}"
        )
        if global_batch_size is not None and global_batch_size != (
            self.global_batch_size
        ):
            lr = self.scaled_learning_rate(global_batch_size)
            effect = (
                f"lr {self.learning_rate:g} * {global_batch_size} / "
                f"{self.global_batch_size} = {lr:g}"
                if rule == "linear"
                else f"lr kept at {lr:g}"
            )
            lines.append(
                f"  lr scaling rule '{rule}': batch {global_batch_size} vs "
                f"recipe {self.global_batch_size}: {effect}"
            )
        else:
            lines.append(
                f"  lr scaling rule '{rule}' (applies when the global batch "
                f"differs from {self.global_batch_size}): {self.lr_scaling_rule}"
            )
        lines.append(
            f"  schedule: warm-up {self.warmup_epochs} epochs from "
            f"{self._warmup_learning_rate():g}, cosine over {self.epochs} epochs "
            f"to {self.min_learning_rate:g}, then {self.cooldown_epochs} cooldown "
            f"epochs (fit for {self.total_epochs()} epochs); per step"
            + (f", {steps_per_epoch} steps/epoch" if steps_per_epoch else "")
        )
        lines.append(
            f"  loss: categorical cross-entropy, label smoothing "
            f"{self.label_smoothing:g}; mixed precision: {self.mixed_precision}"
        )
        if self.augment:
            parts = [f"{k}={v}" for k, v in self.augment.items()]
            lines.append("  augment: " + ", ".join(parts))
        if self.normalize:
            lines.append(
                f"  normalize: mean {self.normalize.get('mean')} std "
                f"{self.normalize.get('std')}"
            )
        if self.eval:
            lines.append(f"  eval: {self.eval}")
        if self.frames:
            lines.append(f"  frames: {self.frames}")
        if self.extras:
            lines.append(f"  other keys: {self.extras}")
        return "\n".join(lines)

    def summary(self, **kwargs):
        """Prints `describe()`."""
        print(self.describe(**kwargs))
