"""Classifiers with a distillation head beside the main head.

Meta-SpikeFormer and E-SpikeFormer (Large) were trained with hard
distillation: a second linear head (`head_kd`) learns the teacher's labels.
Such a classifier's functional graph returns `[logits, logits_kd]`; training
needs both (the distillation loss), inference returns their mean (the
references' rule).
"""


class DistillationHeadMixin:
    """`call`, `compute_output_spec` and `get_config` of a two-head classifier.

    Put it before `ImageClassifier` in the bases; the subclass sets
    `self.num_classes` and `self.distillation_head` in `__init__` and builds
    its graph with both heads' outputs when `distillation_head` is true.

    Example:
    >>> class MyClassifier(DistillationHeadMixin, ImageClassifier): ...
    """

    def call(self, inputs, training=None, mask=None):
        outputs = super().call(inputs, training=training, mask=mask)
        if not self.distillation_head or training:
            return tuple(outputs) if self.distillation_head else outputs
        return (outputs[0] + outputs[1]) / 2.0

    def compute_output_spec(self, inputs, training=None, mask=None):
        spec = super().compute_output_spec(inputs, training=training, mask=mask)
        if self.distillation_head and not training:
            return spec[0]
        return spec

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "distillation_head": self.distillation_head,
            }
        )
        return config
