"""The one-step copy of a classifier and its pure step function."""

import numbers

import keras
from keras import ops

from keras_spikformer.neurons import IntegerSpikeNeuron
from keras_spikformer.neurons.neuron_state import CarriedMembranes


def check_streamable(model):
    """Raises a `ValueError` naming why `model` cannot run step by step."""
    from keras_spikformer.models.image_classifier import ImageClassifier

    if not isinstance(model, ImageClassifier):
        raise TypeError(
            f"Streaming needs a classifier of this package (Spikformer, "
            f"SpikeDrivenTransformer, MetaSpikeFormer, QKFormer, MaxFormer, "
            f"MSQKFormer); got {type(model).__name__}."
        )
    reason = model.stream_refusal()
    if reason is None and any(
        isinstance(layer, IntegerSpikeNeuron) for layer in model._flatten_layers()
    ):
        reason = "its integer-spike neurons keep no membrane state between steps"
    if reason is not None:
        raise ValueError(f"{type(model).__name__} cannot be streamed: {reason}.")


def single_step_copy(model):
    """A copy of `model` built for one time step, with `model`'s current weights.

    Every layer of our families acts on each time step alone except the
    neurons (their membranes carry over) and the final time mean; so the
    copy with `num_timesteps=1` computes one step of the original once the
    neurons run in a `CarriedMembranes` scope.

    Args:
        model: a classifier of this package that can stream.

    Returns:
        The copy (no remat: inference only).
    """
    check_streamable(model)
    config = model.get_config()
    backbone = dict(config["backbone"])
    backbone["config"] = {**backbone["config"], "num_timesteps": 1}
    if "remat" in backbone["config"]:
        backbone["config"]["remat"] = False
    config["backbone"] = backbone
    copy = type(model).from_config(config)
    ours, theirs = copy.weights, model.weights
    shapes = [tuple(v.shape) for v in ours], [tuple(v.shape) for v in theirs]
    if shapes[0] != shapes[1]:
        raise ValueError(
            f"{model.name}: the one-step copy's weights do not match the model's "
            "(a weight whose shape depends on the number of time steps): this "
            "model cannot be streamed."
        )
    for target, source in zip(ours, theirs, strict=True):
        target.assign(source)
    return copy


class StepNetwork:
    """The pure step `(state, x_t) -> (state, outputs)` of a classifier.

    `state` is a dict: `"membranes"` (`{neuron key: [batch, ...]}`, see
    `CarriedMembranes`), `"sums"` (the running sums of the classifier's
    `time_features`, float32) and `"steps"` (float32 scalar, steps so far).
    `outputs` has `"logits"` (this step's logits: the classifier on this
    step alone), `"mean_logits"` (what the multi-step model would output if
    the sequence ended now) and `"steps"`.

    Args:
        model: a classifier of this package that can stream.
        batch_size: int >= 1, the fixed batch size of the state.

    Example:
    >>> net = StepNetwork(model, batch_size=2)
    >>> state = net.initial_state()
    >>> state, out = net.step(state, frame)  # frame [2, H, W, C]
    """

    def __init__(self, model, batch_size):
        if (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, numbers.Integral)
            or batch_size < 1
        ):
            raise ValueError(f"`batch_size` must be an int >= 1; got {batch_size!r}.")
        batch_size = int(batch_size)
        self.batch_size = batch_size
        self.model = single_step_copy(model)
        self.uses_frames = len(self.model.inputs[0].shape) == 5
        shape = tuple(self.model.inputs[0].shape[1:])
        self.frame_shape = shape[1:] if self.uses_frames else shape
        inputs = keras.Input(batch_shape=(batch_size,) + shape)
        features = self.model.time_features(self.model.backbone(inputs))
        self.network = keras.Model(inputs, features, name=f"{model.name}_step")
        self._specs = self._state_specs()

    def _state_specs(self):
        """Shapes of the state, from one forward step on zeros (traced for
        shapes only on JAX, where an eager step runs op by op)."""
        shape = (self.batch_size,) + self.frame_shape
        layers = {}

        def trace(x):
            with CarriedMembranes() as scope:
                features = self._features(x)
            layers.update(scope.layers)
            return scope.final, features

        if keras.backend.backend() == "jax":
            import jax

            final, features = jax.eval_shape(
                trace, jax.ShapeDtypeStruct(shape, "float32")
            )
        else:
            final, features = trace(ops.zeros(shape))
        membranes = {key: (tuple(v.shape), layers[key]) for key, v in final.items()}
        return membranes, [tuple(f.shape) for f in features]

    def initial_state(self):
        """The state of a new sequence: membranes at rest, no steps."""
        membranes, sums = self._specs
        return {
            "membranes": {
                key: layer.resting_membrane(shape)
                for key, (shape, layer) in membranes.items()
            },
            "sums": [ops.zeros(shape, "float32") for shape in sums],
            "steps": ops.zeros((), "float32"),
        }

    def state_names(self):
        """Names of the state's leaves, in `flatten_state` order: a membrane
        `"{k:03d}/{layer}"` is `"membrane_{k:03d}_{layer}"`, then `"sum_{i}"`
        and `"steps"`."""
        membranes, sums = self._specs
        names = [f"membrane_{key.replace('/', '_')}" for key in membranes]
        return names + [f"sum_{i}" for i in range(len(sums))] + ["steps"]

    @staticmethod
    def flatten_state(state):
        """The state's tensors as a list: membranes, sums, then steps."""
        return (
            list(state["membranes"].values()) + list(state["sums"]) + [state["steps"]]
        )

    def unflatten_state(self, leaves):
        """The state dict of `flatten_state`'s list (this network's structure)."""
        keys = list(self._specs[0])
        n, m = len(keys), len(self._specs[1])
        return {
            "membranes": dict(zip(keys, leaves[:n], strict=True)),
            "sums": list(leaves[n : n + m]),
            "steps": leaves[n + m],
        }

    def _features(self, x_t, variables=None):
        x = ops.expand_dims(x_t, 1) if self.uses_frames else x_t
        if variables is None:
            features = self.network(x, training=False)
        else:
            features, _ = self.network.stateless_call(*variables, x, training=False)
        features = features if isinstance(features, (list, tuple)) else [features]
        return [f[:, 0] for f in features]  # the one time step

    def step(self, state, x_t, variables=None):
        """One time step from `state`; pure (nothing is assigned).

        Args:
            state: a state of this network (`initial_state()` or a step's).
            x_t: `[batch, H, W, C]`, this step's model-ready image or frame.
            variables: `(trainable, non_trainable)` value lists of
                `self.network` for a stateless call (JAX), or `None`.

        Returns:
            `(new_state, outputs)`.
        """
        with CarriedMembranes(state["membranes"]) as scope:
            features = self._features(x_t, variables)
        sums = [
            s + ops.cast(f, "float32")
            for s, f in zip(state["sums"], features, strict=True)
        ]
        steps = state["steps"] + 1.0
        pack = tuple if len(features) > 1 else (lambda xs: list(xs)[0])
        outputs = {
            "logits": self.model.logits_from_time_mean(pack(features)),
            "mean_logits": self.model.logits_from_time_mean(
                pack(s / steps for s in sums)
            ),
            "steps": steps,
        }
        new_state = {"membranes": scope.final, "sums": sums, "steps": steps}
        return new_state, outputs
