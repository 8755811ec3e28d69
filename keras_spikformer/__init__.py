"""keras-spikformer: Spikformer spiking transformers for Keras 3."""

from keras_spikformer import convert, inference, layers, neurons
from keras_spikformer import xla_cpu_flags as _xla_cpu_flags
from keras_spikformer.hub import upload_preset
from keras_spikformer.layers import (
    DirectEncoding,
    SpikformerBlock,
    SpikingConv2D,
    SpikingDense,
    SpikingMLP,
    SpikingSelfAttention,
)
from keras_spikformer.models import (
    Backbone,
    ESpikeFormer,
    ESpikeFormerBaseBackbone,
    ESpikeFormerImageClassifierPreprocessor,
    ESpikeFormerLarge,
    ESpikeFormerLargeBackbone,
    ImageClassifier,
    ImageClassifierPreprocessor,
    MaxFormer,
    MaxFormerBackbone,
    MaxFormerImageClassifierPreprocessor,
    MetaSpikeFormer,
    MetaSpikeFormerBackbone,
    MetaSpikeFormerImageClassifierPreprocessor,
    MSQKFormer,
    MSQKFormerBackbone,
    MSQKFormerImageClassifierPreprocessor,
    QKFormer,
    QKFormerBackbone,
    QKFormerImageClassifierPreprocessor,
    SpikeDrivenTransformer,
    SpikeDrivenTransformerBackbone,
    SpikeDrivenTransformerImageClassifierPreprocessor,
    Spikformer,
    SpikformerBackbone,
    SpikformerImageClassifierPreprocessor,
)
from keras_spikformer.models.spikformer import SpikingPatchSplitting
from keras_spikformer.neurons import (
    ATanSurrogate,
    IntegerSpikeNeuron,
    LIFNeuron,
    SigmoidSurrogate,
    Surrogate,
    record_spikes,
)
from keras_spikformer.streaming import Stream
from keras_spikformer.training import schedules as _schedules  # noqa: F401  (registers the LR schedule for load_model)
from keras_spikformer.version import __version__

__all__ = [
    "ATanSurrogate",
    "Backbone",
    "ESpikeFormer",
    "ESpikeFormerBaseBackbone",
    "ESpikeFormerImageClassifierPreprocessor",
    "ESpikeFormerLarge",
    "ESpikeFormerLargeBackbone",
    "ImageClassifier",
    "ImageClassifierPreprocessor",
    "SpikformerImageClassifierPreprocessor",
    "DirectEncoding",
    "IntegerSpikeNeuron",
    "LIFNeuron",
    "MaxFormer",
    "MaxFormerBackbone",
    "MaxFormerImageClassifierPreprocessor",
    "MetaSpikeFormer",
    "MetaSpikeFormerBackbone",
    "MetaSpikeFormerImageClassifierPreprocessor",
    "MSQKFormer",
    "MSQKFormerBackbone",
    "MSQKFormerImageClassifierPreprocessor",
    "QKFormer",
    "QKFormerBackbone",
    "QKFormerImageClassifierPreprocessor",
    "SigmoidSurrogate",
    "SpikeDrivenTransformer",
    "SpikeDrivenTransformerBackbone",
    "SpikeDrivenTransformerImageClassifierPreprocessor",
    "Spikformer",
    "Stream",
    "SpikformerBackbone",
    "SpikformerBlock",
    "SpikingConv2D",
    "SpikingDense",
    "SpikingMLP",
    "SpikingPatchSplitting",
    "SpikingSelfAttention",
    "Surrogate",
    "__version__",
    "convert",
    "inference",
    "layers",
    "neurons",
    "record_spikes",
    "upload_preset",
]

# JAX on CPU: no YNNPACK convolution fusion (slow filter gradients); see the module.
_xla_cpu_flags.apply()
