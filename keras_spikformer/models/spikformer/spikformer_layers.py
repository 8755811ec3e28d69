"""Spiking Patch Splitting (SPS): the convolutional spiking stem of Spikformer."""

import math

import keras
from keras import ops

from keras_spikformer.layers.max_pool import max_pool_3x3_s2
from keras_spikformer.layers.remat import rematerialize
from keras_spikformer.layers.spiking_units import SpikingConv2D
from keras_spikformer.layers.time_folding import fold_time, unfold_time

NUM_STAGES = 4


def check_patch_size(patch_size):
    """Raises unless `patch_size` is a power of two the 4 stages can reach."""
    if patch_size < 1 or patch_size & (patch_size - 1) or patch_size > 2**NUM_STAGES:
        raise ValueError(
            f"`patch_size` must be a power of two from 1 to {2**NUM_STAGES} (each of "
            f"the {NUM_STAGES} SPS stages can halve the resolution once); got "
            f"{patch_size}. Spikformer uses 4 for CIFAR and 16 for ImageNet/DVS."
        )


@keras.saving.register_keras_serializable(package="keras_spikformer")
class SpikingPatchSplitting(keras.layers.Layer):
    """Turns a spike/image sequence into `hidden_dim`-wide spiking tokens.

    Four stages of Conv3x3 -> BN -> LIF with widths D/8, D/4, D/2, D; the
    last `log2(patch_size)` stages are followed by MaxPool(3, 2, pad 1). A
    relative position embedding `LIF(BN(Conv3x3(feat))) + feat` follows, and
    the grid is flattened row-major into tokens (`n = h * W + w`). The output
    holds values in {0, 1, 2}.

    Args:
        hidden_dim: int, token features `D`; must be divisible by 8.
        patch_size: int, a power of two up to 16: the total down-sampling.
            Defaults to `4`.
        neuron_config: dict of `LIFNeuron` arguments.
        num_timesteps: int or `None`. When set, the layer also takes static
            images `[batch, height, width, channels]` and encodes them directly
            over `num_timesteps` steps, running the first convolution and batch
            norm once instead of T times (same outputs as repeating the image).
        remat: bool, in training recompute each stage (conv, batch norm, LIF
            and its pooling) and the position embedding in the backward pass,
            keeping only the spikes between stages (batch-norm moving
            statistics are still updated once per step). Defaults to `False`.
        **kwargs: standard layer arguments.

    Input shape: `[batch, time, height, width, channels]` (or static images,
    see `num_timesteps`), with height and width divisible by `patch_size`.
    Output shape: `[batch, time, (height/patch) * (width/patch), hidden_dim]`.

    Example:
    >>> sps = SpikingPatchSplitting(hidden_dim=384, patch_size=4)
    >>> tokens = sps(keras.random.normal((2, 4, 32, 32, 3)))  # (2, 4, 64, 384)

    References:
        Zhou et al., ICLR 2023 (arXiv 2209.15425), Section 3.2.
    """

    def __init__(
        self,
        hidden_dim,
        patch_size=4,
        neuron_config=None,
        num_timesteps=None,
        remat=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if hidden_dim % 8:
            raise ValueError(
                f"`hidden_dim` must be divisible by 8 (the SPS stages have D/8, D/4 "
                f"and D/2 channels); got {hidden_dim}."
            )
        check_patch_size(patch_size)
        self.hidden_dim = int(hidden_dim)
        self.patch_size = int(patch_size)
        self.neuron_config = dict(neuron_config or {})
        self.num_timesteps = None if num_timesteps is None else int(num_timesteps)
        self.remat = bool(remat)

    @property
    def num_pooled_stages(self):
        return int(math.log2(self.patch_size))

    def _sequence_shape(self, input_shape):
        """The `[batch, time, H, W, C]` shape that `input_shape` stands for."""
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
        input_shape = self._sequence_shape(input_shape)
        height, width = input_shape[2], input_shape[3]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"Image size {height}x{width} is not divisible by patch_size "
                f"{self.patch_size}; resize or crop the images to a multiple of "
                f"{self.patch_size}."
            )
        first_pooled = NUM_STAGES - self.num_pooled_stages
        self.stages = []
        shape = tuple(input_shape)
        for i in range(NUM_STAGES):
            stage = SpikingConv2D(
                self.hidden_dim // 2 ** (NUM_STAGES - 1 - i),
                neuron_config=self.neuron_config,
                name=f"stage_{i}",
                dtype=self.dtype_policy,
            )
            stage.build(shape)
            shape = stage.compute_output_shape(shape)
            if i >= first_pooled:
                shape = shape[:2] + (shape[2] // 2, shape[3] // 2, shape[4])
            self.stages.append(stage)
        self.rpe = SpikingConv2D(
            self.hidden_dim,
            neuron_config=self.neuron_config,
            name="rpe",
            dtype=self.dtype_policy,
        )
        self.rpe.build(shape)

    def call(self, inputs, training=None):
        static = len(inputs.shape) == 4
        num_timesteps = self.num_timesteps if static else inputs.shape[1]
        first_pooled = NUM_STAGES - self.num_pooled_stages
        x = inputs
        for i, stage in enumerate(self.stages):
            # Direct encoding is folded into the first stage.
            steps = num_timesteps if i == 0 and static else None
            pooled = i >= first_pooled

            def run(x, training, stage=stage, steps=steps, pooled=pooled):
                x = stage(x, training=training, num_timesteps=steps)
                if pooled:
                    x = unfold_time(max_pool_3x3_s2(fold_time(x)), num_timesteps)
                return x

            x = self._unit(stage, run, x, training)

        def embed(x, training):
            return x + self.rpe(x, training=training)

        x = self._unit(self.rpe, embed, x, training)
        return ops.reshape(
            x, (-1, num_timesteps, x.shape[2] * x.shape[3], self.hidden_dim)
        )

    def _unit(self, layer, run, x, training):
        """`run(x, training)`, recomputed in the backward pass with `remat`."""
        if self.remat and training:
            return rematerialize(layer, lambda x: run(x, True), x)
        return run(x, training)

    def compute_output_shape(self, input_shape):
        shape = self._sequence_shape(input_shape)
        grid = (shape[2] // self.patch_size) * (shape[3] // self.patch_size)
        return (shape[0], shape[1], grid, self.hidden_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "patch_size": self.patch_size,
                "neuron_config": self.neuron_config,
                "num_timesteps": self.num_timesteps,
                "remat": self.remat,
            }
        )
        return config
