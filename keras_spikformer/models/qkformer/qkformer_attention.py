"""QKFormer attention: Q-K token attention and the stage-3 spiking self-attention."""

import keras
from keras import ops

from keras_spikformer.layers import SpikingSelfAttention
from keras_spikformer.layers.batch_norm import BatchNorm
from keras_spikformer.layers.spiking_units import TORCH_DEFAULT_INIT, SpikingDense
from keras_spikformer.layers.time_folding import folded_shape
from keras_spikformer.neurons import LIFNeuron, neuron_state
from keras_spikformer.neurons.recording import notify

# Longest flattened (time, batch) sequence that JAX unrolls (see `call`).
UNROLLED_STEPS = 32


@keras.saving.register_keras_serializable(package="keras_spikformer")
class BatchSpanningLIFNeuron(LIFNeuron):
    """A LIF neuron whose "time" axis is the flattened (time, batch) axis.

    The reference QKFormer (every flavour) feeds the projection neuron of its
    stage-3 spiking self-attention a `[T * B, C, N]` tensor, so SpikingJelly
    steps the membrane through `T * B` "time steps" in time-major order
    `(t0, b0), (t0, b1), ..., (t1, b0), ...`: each sample's spikes depend on
    the samples before it in the batch. The released checkpoints were trained
    and evaluated that way; this layer reproduces it exactly (same charge,
    fire, reset and surrogate gradient as `LIFNeuron`) for any batch size:
    an unrolled loop when the batch size is known when tracing (on JAX, up to
    `UNROLLED_STEPS` steps), else a `keras.ops.scan` over the flattened axis.

    Args:
        **kwargs: `LIFNeuron` arguments.

    Input shape: `[batch, time, ...]` with a static `time`. Output: the same.

    Example:
    >>> lif = BatchSpanningLIFNeuron()
    >>> spikes = lif(keras.random.normal((2, 4, 64, 384)))
    """

    def call(self, inputs):
        if neuron_state.active() is not None:
            raise ValueError(
                f"{self.name} steps its membrane through the whole batch (QKFormer's "
                "reference projection neuron), so a stream of time steps cannot "
                "carry it: build the model with batch_spanning_projection=False."
            )
        num_timesteps = inputs.shape[1]
        rest = tuple(inputs.shape[2:])
        perm = (1, 0) + tuple(range(2, len(inputs.shape)))
        x = ops.reshape(ops.transpose(ops.cast(inputs, "float32"), perm), (-1,) + rest)
        length = x.shape[0]
        if length is not None and (
            length <= UNROLLED_STEPS or keras.backend.backend() != "jax"
        ):
            # Known length: `LIFNeuron`'s unrolled loop on a batch of one
            # sequence (XLA compiles it far faster than a while loop).
            spikes = self._fire(ops.expand_dims(x, 0))[0]
        else:
            # On JAX a longer sequence is a scan: XLA compiling the unrolled
            # T * B = 128 steps of qkformer_4_384_cifar10's training step at
            # batch 32 took 4.6 GB (the process's peak, 0.67x the reference's
            # training memory even with remat), the scan 0.6 GB.
            spikes = self._fire_sequence(x)
        spikes = ops.transpose(ops.reshape(spikes, (num_timesteps, -1) + rest), perm)
        outputs = ops.cast(spikes, self.compute_dtype)
        notify(self, outputs)
        return outputs

    def _fire_sequence(self, inputs):
        """Runs the neuron along axis 0 of `inputs` (any length)."""
        decay = 1.0 - 1.0 / self.tau
        input_scale = 1.0 / self.tau if self.decay_input else 1.0
        threshold = self.v_threshold

        @ops.custom_gradient
        def fire(x):
            v0 = ops.zeros_like(x[0])
            if self.v_reset:
                v0 = v0 + self.v_reset

            def step(carry, x_t):
                h = self._charge(carry[0], x_t)
                s = ops.cast(ops.greater_equal(h - threshold, 0.0), h.dtype)
                state = (self._reset(h, s), h, s)
                return state, state

            _, (_, potentials, spikes) = ops.scan(step, (v0, v0, v0), x)

            def grad(*args, upstream=None):
                if upstream is None:
                    (upstream,) = args

                def back(grad_v, inputs_t):
                    upstream_t, h, s = inputs_t[0], inputs_t[1], inputs_t[2]
                    surrogate_grad = self.surrogate.derivative(h - threshold)
                    through_reset = self._reset_gradient(h, s, surrogate_grad)
                    carried = grad_v if through_reset is None else grad_v * through_reset
                    grad_h = upstream_t * surrogate_grad + carried
                    return grad_h * decay, grad_h * input_scale

                # One stacked sequence: Keras' TensorFlow scan cannot take
                # several sequences of unknown length.
                xs = ops.stack([upstream, potentials, spikes], axis=1)
                _, grads = ops.scan(back, ops.zeros_like(v0), xs, reverse=True)
                return grads

            return spikes, grad

        return fire(inputs)


@keras.saving.register_keras_serializable(package="keras_spikformer")
class BatchSpanningSpikingDense(SpikingDense):
    """`SpikingDense` whose neuron is a `BatchSpanningLIFNeuron`.

    Args:
        **kwargs: `SpikingDense` arguments.

    Example:
    >>> proj = BatchSpanningSpikingDense(384)
    >>> spikes = proj(keras.random.normal((2, 4, 64, 384)))
    """

    def build(self, input_shape):
        folded = folded_shape(input_shape)
        self.synapse = self.make_synapse()
        self.synapse.build(folded)
        self.bn = BatchNorm(name="bn", dtype=self.dtype_policy)
        self.bn.build(self.synapse.compute_output_shape(folded))
        self.lif = BatchSpanningLIFNeuron(
            **self.neuron_config, name="lif", dtype=self.dtype_policy
        )
        self.lif.build(self.compute_output_shape(input_shape))


@keras.saving.register_keras_serializable(package="keras_spikformer")
class QKFormerSelfAttention(SpikingSelfAttention):
    """Spikformer's spiking self-attention as QKFormer's stage 3 runs it.

    Identical to `SpikingSelfAttention` (bias-free q/k/v, scale 0.125, attention
    neuron at 0.5) except, with `batch_spanning_projection=True`, for the
    projection neuron, which steps through the flattened (time, batch) axis as
    the reference code does (see `BatchSpanningLIFNeuron`).

    Args:
        batch_spanning_projection: bool, reproduce the reference projection
            neuron (needed for the released weights' exact outputs). With
            `False` the neuron runs over time per sample. Defaults to `True`.
        **kwargs: `SpikingSelfAttention` arguments.

    Input/output shape: `[batch, time, tokens, hidden_dim]`.

    Example:
    >>> ssa = QKFormerSelfAttention(hidden_dim=384, num_heads=8)
    >>> y = ssa(keras.random.uniform((2, 4, 64, 384)) > 0.8)
    """

    def __init__(self, hidden_dim, num_heads, batch_spanning_projection=True, **kwargs):
        super().__init__(hidden_dim, num_heads, **kwargs)
        self.batch_spanning_projection = bool(batch_spanning_projection)

    def build(self, input_shape):
        def unit(name, use_bias, cls=SpikingDense):
            layer = cls(
                self.hidden_dim,
                use_bias=use_bias,
                neuron_config=self.neuron_config,
                kernel_initializer=TORCH_DEFAULT_INIT,
                name=name,
                dtype=self.dtype_policy,
            )
            layer.build(input_shape)
            return layer

        self.q = unit("q", self.qkv_bias)
        self.k = unit("k", self.qkv_bias)
        self.v = unit("v", self.qkv_bias)
        attn_config = {**self.neuron_config, "v_threshold": self.attention_v_threshold}
        self.attn_lif = LIFNeuron(**attn_config, name="attn_lif", dtype=self.dtype_policy)
        self.attn_lif.build(input_shape)
        proj_cls = (
            BatchSpanningSpikingDense if self.batch_spanning_projection else SpikingDense
        )
        self.proj = unit("proj", True, proj_cls)

    def get_config(self):
        config = super().get_config()
        config["batch_spanning_projection"] = self.batch_spanning_projection
        return config


@keras.saving.register_keras_serializable(package="keras_spikformer")
class QKTokenAttention(keras.layers.Layer):
    """Q-K token attention (QKTA): a per-token, per-head spike mask on K.

    ```
    q, k = LIF(BN(Linear(x)))                      # binary, no bias
    m[h, n] = LIF_0.5(sum over head h's channels of q[n])
    y = LIF(BN(Linear(m[head(c), n] * k[n, c])))   # projection with bias
    ```
    No V, no scale, no softmax: cost linear in tokens and channels. Channel `c`
    belongs to head `c // (hidden_dim / num_heads)`.

    Args:
        hidden_dim: int, channels `C`; must be divisible by `num_heads`.
        num_heads: int, heads.
        attention_v_threshold: float, threshold of the mask neuron. Defaults to `0.5`.
        neuron_config: dict of `LIFNeuron` arguments for all neurons.
        **kwargs: standard layer arguments.

    Input/output shape: `[batch, time, ..., hidden_dim]` (tokens or a grid).

    Example:
    >>> qkta = QKTokenAttention(hidden_dim=96, num_heads=6)
    >>> y = qkta(keras.random.uniform((2, 4, 56, 56, 96)) > 0.8)

    References:
        Zhou et al., "QKFormer: Hierarchical Spiking Transformer using Q-K
        Attention", NeurIPS 2024 (arXiv 2403.16552).
    """

    def __init__(
        self, hidden_dim, num_heads, attention_v_threshold=0.5, neuron_config=None,
        **kwargs,
    ):  # fmt: skip
        super().__init__(**kwargs)
        if int(num_heads) < 1 or int(hidden_dim) % int(num_heads):
            raise ValueError(
                f"`hidden_dim` ({hidden_dim}) must be divisible by `num_heads` "
                f"({num_heads}); pick num_heads among the divisors of hidden_dim."
            )
        self.hidden_dim = int(hidden_dim)
        self.num_heads = int(num_heads)
        self.attention_v_threshold = float(attention_v_threshold)
        self.neuron_config = dict(neuron_config or {})

    def build(self, input_shape):
        def unit(name, use_bias):
            layer = SpikingDense(
                self.hidden_dim,
                use_bias=use_bias,
                neuron_config=self.neuron_config,
                kernel_initializer=TORCH_DEFAULT_INIT,
                name=name,
                dtype=self.dtype_policy,
            )
            layer.build(input_shape)
            return layer

        self.q = unit("q", False)
        self.k = unit("k", False)
        attn_config = {**self.neuron_config, "v_threshold": self.attention_v_threshold}
        self.attn_lif = LIFNeuron(**attn_config, name="attn_lif", dtype=self.dtype_policy)
        self.attn_lif.build(tuple(input_shape[:-1]) + (self.num_heads,))
        self.proj = unit("proj", True)

    def call(self, inputs, training=None):
        head_dim = self.hidden_dim // self.num_heads
        heads = (-1,) + tuple(inputs.shape[1:-1]) + (self.num_heads, head_dim)
        q = ops.reshape(self.q(inputs, training=training), heads)
        k = ops.reshape(self.k(inputs, training=training), heads)
        mask = self.attn_lif(ops.sum(q, axis=-1))  # [batch, time, ..., heads]
        x = k * ops.expand_dims(mask, -1)
        x = ops.reshape(x, (-1,) + tuple(inputs.shape[1:-1]) + (self.hidden_dim,))
        return self.proj(x, training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_heads": self.num_heads,
                "attention_v_threshold": self.attention_v_threshold,
                "neuron_config": self.neuron_config,
            }
        )
        return config
