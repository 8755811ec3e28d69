"""The Spike-driven Transformer stem: a pooled conv ladder and a membrane RPE shortcut."""

import keras

from keras_spikformer.layers.batch_norm import BatchNorm
from keras_spikformer.layers.max_pool import max_pool_3x3_s2
from keras_spikformer.layers.remat import RematMixin
from keras_spikformer.layers.spiking_units import TRUNC_NORMAL_INIT, SpikingConv2D
from keras_spikformer.layers.time_folding import fold_time, folded_shape, unfold_time
from keras_spikformer.neurons import LIFNeuron

NUM_STAGES = 4


def check_pooling(pooling):
    """Raises unless `pooling` is a string of 4 flags, each `"0"` or `"1"`."""
    if (
        not isinstance(pooling, str)
        or len(pooling) != NUM_STAGES
        or set(pooling) - {"0", "1"}
    ):
        raise ValueError(
            f"`pooling` must be a string of {NUM_STAGES} flags, each '0' or '1' "
            f"(flag i: max-pool after stem conv i); got {pooling!r}. The reference "
            "uses '1111' for ImageNet, '0011' for CIFAR and CIFAR10-DVS, '0111' "
            "for DVS128 Gesture."
        )


def pooled_size(size, pooling):
    """Grid size after the stem: `size / 2**(number of '1' flags)`."""
    return size // 2 ** pooling.count("1")


def _conv(filters, name, dtype):
    return keras.layers.Conv2D(
        filters,
        3,
        padding="same",
        use_bias=False,
        kernel_initializer=TRUNC_NORMAL_INIT,
        name=name,
        dtype=dtype,
    )


@keras.saving.register_keras_serializable(package="keras_spikformer")
class MembraneRPE(keras.layers.Layer):
    """Relative position encoding with a membrane shortcut: `x + BN(Conv3x3(LIF(x)))`.

    The input and the output are real valued (membrane inputs); the
    convolution sees the spikes of `x`.

    Args:
        filters: int, channels of the input and the output.
        neuron_config: dict of `LIFNeuron` arguments.
        **kwargs: standard layer arguments.

    Input/output shape: `[batch, time, height, width, filters]`.

    Example:
    >>> rpe = MembraneRPE(64)
    >>> u = rpe(keras.random.normal((2, 4, 8, 8, 64)))

    References:
        Yao et al., "Spike-driven Transformer", NeurIPS 2023 (arXiv 2307.01694).
    """

    def __init__(self, filters, neuron_config=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.neuron_config = dict(neuron_config or {})

    def build(self, input_shape):
        self.lif = LIFNeuron(**self.neuron_config, name="lif", dtype=self.dtype_policy)
        self.lif.build(input_shape)
        self.conv = _conv(self.filters, "conv", self.dtype_policy)
        self.conv.build(folded_shape(input_shape))
        self.bn = BatchNorm(name="bn", dtype=self.dtype_policy)
        self.bn.build(folded_shape(input_shape)[:-1] + (self.filters,))

    def call(self, inputs, training=None):
        x = self.conv(fold_time(self.lif(inputs)))
        x = self.bn(x, training=training)
        return inputs + unfold_time(x, inputs.shape[1])

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters, "neuron_config": self.neuron_config})
        return config


@keras.saving.register_keras_serializable(package="keras_spikformer")
class SpikeDrivenPatchSplitting(RematMixin, keras.layers.Layer):
    """Stem of the Spike-driven Transformer (the reference's `MS_SPS`).

    ```
    stage i = 0, 1, 2:  Conv3x3 -> BN -> LIF   (D/8, D/4, D/2 channels)
                        then MaxPool(3, 2, pad 1) if pooling[i] == "1" (on spikes)
    stage 3:            Conv3x3 -> BN           (D channels, no LIF)
                        then MaxPool if pooling[3] == "1" (on the real-valued
                        BN output; padded with -inf)
    rpe:                x + BN(Conv3x3(LIF(x)))  (`MembraneRPE`)
    ```

    The output is a real-valued membrane input, not spikes. Max pooling is
    PyTorch's (`-inf` padding, first-maximum gradient).

    Args:
        hidden_dim: int, output channels `D`; divisible by 8.
        pooling: str of 4 flags `"0"`/`"1"`, where to pool. Defaults to
            `"1111"` (ImageNet: /16).
        neuron_config: dict of `LIFNeuron` arguments.
        num_timesteps: int or `None`. When set, the layer also takes static
            images `[batch, height, width, channels]` and encodes them directly
            over `num_timesteps` steps (the first conv and BN run once).
        remat: bool, in training recompute each stage (with its pooling) and
            the RPE in the backward pass, keeping only their outputs (the
            moving statistics still move once per step). Defaults to `False`.
        **kwargs: standard layer arguments.

    Input shape: `[batch, time, height, width, channels]` (or static images,
    see `num_timesteps`); height and width divisible by `2**pooling.count("1")`.
    Output shape: `[batch, time, height / r, width / r, hidden_dim]`.

    Example:
    >>> stem = SpikeDrivenPatchSplitting(64, pooling="0011", num_timesteps=4)
    >>> u = stem(keras.random.normal((2, 32, 32, 3)))  # (2, 4, 8, 8, 64)

    References:
        Yao et al., "Spike-driven Transformer", NeurIPS 2023 (arXiv 2307.01694).
    """

    def __init__(
        self,
        hidden_dim,
        pooling="1111",
        neuron_config=None,
        num_timesteps=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(hidden_dim) % 8:
            raise ValueError(
                f"`hidden_dim` must be divisible by 8 (the stem has D/8, D/4 and "
                f"D/2 channels); got {hidden_dim}."
            )
        check_pooling(pooling)
        self.hidden_dim = int(hidden_dim)
        self.pooling = pooling
        self.neuron_config = dict(neuron_config or {})
        self.num_timesteps = None if num_timesteps is None else int(num_timesteps)

    def _sequence_shape(self, input_shape):
        if len(input_shape) == 4 and self.num_timesteps:
            return (input_shape[0], self.num_timesteps) + tuple(input_shape[1:])
        if len(input_shape) != 5:
            raise ValueError(
                f"{self.name} expects [batch, time, height, width, channels] (or "
                "[batch, height, width, channels] images when built with "
                f"num_timesteps); got shape {tuple(input_shape)}."
            )
        return tuple(input_shape)

    def build(self, input_shape):
        shape = self._sequence_shape(input_shape)
        factor = 2 ** self.pooling.count("1")
        if shape[2] % factor or shape[3] % factor:
            raise ValueError(
                f"Image size {shape[2]}x{shape[3]} is not divisible by {factor}, the "
                f"down-sampling of pooling={self.pooling!r}; resize or crop the "
                f"images to a multiple of {factor}."
            )
        policy = self.dtype_policy
        self.stages = []
        for i in range(NUM_STAGES - 1):
            stage = SpikingConv2D(
                self.hidden_dim // 2 ** (NUM_STAGES - 1 - i),
                neuron_config=self.neuron_config,
                kernel_initializer=TRUNC_NORMAL_INIT,
                name=f"stage_{i}",
                dtype=policy,
            )
            stage.build(shape)
            shape = stage.compute_output_shape(shape)
            if self.pooling[i] == "1":
                shape = shape[:2] + ((shape[2] + 1) // 2, (shape[3] + 1) // 2, shape[4])
            self.stages.append(stage)
        self.stage_3_conv = _conv(self.hidden_dim, "stage_3_conv", policy)
        self.stage_3_conv.build(folded_shape(shape))
        self.stage_3_bn = BatchNorm(name="stage_3_bn", dtype=policy)
        self.stage_3_bn.build(folded_shape(shape)[:-1] + (self.hidden_dim,))
        if self.pooling[3] == "1":
            shape = shape[:2] + ((shape[2] + 1) // 2, (shape[3] + 1) // 2, shape[4])
        self.rpe = MembraneRPE(
            self.hidden_dim, neuron_config=self.neuron_config, name="rpe", dtype=policy
        )
        self.rpe.build(shape[:4] + (self.hidden_dim,))

    def call(self, inputs, training=None):
        static = len(inputs.shape) == 4
        num_timesteps = self.num_timesteps if static else inputs.shape[1]
        x = inputs
        for i, stage in enumerate(self.stages):
            # Direct encoding is folded into the first stage.
            steps = num_timesteps if i == 0 and static else None

            def run(x, training, stage=stage, steps=steps, pooled=self.pooling[i]):
                x = stage(x, training=training, num_timesteps=steps)
                if pooled == "1":
                    x = unfold_time(max_pool_3x3_s2(fold_time(x)), num_timesteps)
                return x

            x = self.remat_call(run, x, training=training)

        def stage_3(x, training):
            x = self.stage_3_bn(self.stage_3_conv(fold_time(x)), training=training)
            if self.pooling[3] == "1":
                x = max_pool_3x3_s2(x)
            return unfold_time(x, num_timesteps)

        x = self.remat_call(stage_3, x, training=training)
        return self.remat_call(self.rpe, x, training=training)

    def compute_output_shape(self, input_shape):
        shape = self._sequence_shape(input_shape)
        factor = 2 ** self.pooling.count("1")
        return (
            shape[0],
            shape[1],
            shape[2] // factor,
            shape[3] // factor,
            self.hidden_dim,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "pooling": self.pooling,
                "neuron_config": self.neuron_config,
                "num_timesteps": self.num_timesteps,
            }
        )
        return config
