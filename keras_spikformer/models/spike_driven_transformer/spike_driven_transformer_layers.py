"""Membrane-shortcut MLP and block of the Spike-driven Transformer."""

import keras

from keras_spikformer.layers.batch_norm import BatchNorm
from keras_spikformer.layers.remat import RematMixin
from keras_spikformer.layers.spiking_units import TRUNC_NORMAL_INIT
from keras_spikformer.models.spike_driven_transformer.spike_driven_transformer_attention import (
    SpikeDrivenSelfAttention,
)
from keras_spikformer.neurons import LIFNeuron


@keras.saving.register_keras_serializable(package="keras_spikformer")
class SpikeDrivenMLP(keras.layers.Layer):
    """MLP branch of a membrane-shortcut block: each layer fires its input first.

    ```
    z = BN(fc1(LIF(u)))            # fc1_lif -> fc1 (bias) -> fc1_bn
    z = u + z                      # only when the inner width equals hidden_dim
    return BN(fc2(LIF(z)))         # fc2_lif -> fc2 (bias) -> fc2_bn, no LIF
    ```

    Args:
        hidden_dim: int, input and output channels `D`.
        mlp_ratio: float, the inner width is `int(hidden_dim * mlp_ratio)`.
            Defaults to `4.0`.
        neuron_config: dict of `LIFNeuron` arguments.
        **kwargs: standard layer arguments.

    Input/output shape: `[batch, time, ..., hidden_dim]` (real-valued membrane in,
    real-valued branch output out).

    Example:
    >>> mlp = SpikeDrivenMLP(hidden_dim=64)
    >>> m = mlp(keras.random.normal((2, 4, 8, 8, 64)))

    References:
        Yao et al., "Spike-driven Transformer", NeurIPS 2023 (arXiv 2307.01694).
    """

    def __init__(self, hidden_dim, mlp_ratio=4.0, neuron_config=None, **kwargs):
        super().__init__(**kwargs)
        if not float(mlp_ratio) > 0:
            raise ValueError(f"`mlp_ratio` must be positive; got {mlp_ratio}.")
        self.hidden_dim = int(hidden_dim)
        self.mlp_ratio = float(mlp_ratio)
        self.neuron_config = dict(neuron_config or {})

    @property
    def inner_dim(self):
        return int(self.hidden_dim * self.mlp_ratio)

    def build(self, input_shape):
        policy = self.dtype_policy
        inner_shape = tuple(input_shape[:-1]) + (self.inner_dim,)
        for i, (width, shape) in enumerate(
            ((self.inner_dim, input_shape), (self.hidden_dim, inner_shape)), start=1
        ):
            lif = LIFNeuron(**self.neuron_config, name=f"fc{i}_lif", dtype=policy)
            lif.build(shape)
            dense = keras.layers.Dense(
                width, kernel_initializer=TRUNC_NORMAL_INIT, name=f"fc{i}", dtype=policy
            )
            dense.build(shape)
            bn = BatchNorm(name=f"fc{i}_bn", dtype=policy)
            bn.build(tuple(shape[:-1]) + (width,))
            setattr(self, f"fc{i}_lif", lif)
            setattr(self, f"fc{i}", dense)
            setattr(self, f"fc{i}_bn", bn)

    def call(self, inputs, training=None):
        z = self.fc1_bn(self.fc1(self.fc1_lif(inputs)), training=training)
        if self.inner_dim == self.hidden_dim:
            z = inputs + z
        return self.fc2_bn(self.fc2(self.fc2_lif(z)), training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.hidden_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "mlp_ratio": self.mlp_ratio,
                "neuron_config": self.neuron_config,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_spikformer")
class SpikeDrivenBlock(RematMixin, keras.layers.Layer):
    """Membrane-shortcut block: `u = u + SDSA(u); u = u + MLP(u)`.

    Each branch starts with a LIF and ends with batch norm, so the residual
    stream is a real-valued membrane input (Spikformer's blocks add spikes
    instead). No layer norm, no stochastic depth (the reference builds a
    `DropPath` but never calls it).

    Args:
        hidden_dim: int, channels `D`.
        num_heads: int, attention heads.
        mlp_ratio: float, MLP expansion. Defaults to `4.0`.
        erode: bool, the CIFAR10-DVS dilations in the attention. Defaults to
            `False`.
        attention_v_threshold: float, threshold of the attention mask neuron.
            Defaults to `0.5`.
        neuron_config: dict of `LIFNeuron` arguments.
        remat: bool, in training recompute the whole block in the backward
            pass, keeping only its input (the moving statistics still move
            once per step). Defaults to `False`.
        **kwargs: standard layer arguments.

    Input/output shape: `[batch, time, height, width, hidden_dim]`.

    Example:
    >>> block = SpikeDrivenBlock(hidden_dim=64, num_heads=8)
    >>> u = block(keras.random.normal((2, 4, 8, 8, 64)))

    References:
        Yao et al., "Spike-driven Transformer", NeurIPS 2023 (arXiv 2307.01694).
    """

    def __init__(
        self,
        hidden_dim,
        num_heads,
        mlp_ratio=4.0,
        erode=False,
        attention_v_threshold=0.5,
        neuron_config=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_dim = int(hidden_dim)
        self.num_heads = int(num_heads)
        self.mlp_ratio = float(mlp_ratio)
        self.erode = bool(erode)
        self.attention_v_threshold = float(attention_v_threshold)
        self.neuron_config = dict(neuron_config or {})
        # Impossible head counts fail at construction, not at build.
        self.attn = SpikeDrivenSelfAttention(
            self.hidden_dim,
            self.num_heads,
            erode=self.erode,
            attention_v_threshold=self.attention_v_threshold,
            neuron_config=self.neuron_config,
            name="attn",
            dtype=self.dtype_policy,
        )
        self.mlp = SpikeDrivenMLP(
            self.hidden_dim,
            self.mlp_ratio,
            neuron_config=self.neuron_config,
            name="mlp",
            dtype=self.dtype_policy,
        )

    def build(self, input_shape):
        self.attn.build(input_shape)
        self.mlp.build(input_shape)

    def call(self, inputs, training=None):
        return self.remat_call(self._forward, inputs, training=training)

    def _forward(self, inputs, training=None):
        x = inputs + self.attn(inputs, training=training)
        return x + self.mlp(x, training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_heads": self.num_heads,
                "mlp_ratio": self.mlp_ratio,
                "erode": self.erode,
                "attention_v_threshold": self.attention_v_threshold,
                "neuron_config": self.neuron_config,
            }
        )
        return config
