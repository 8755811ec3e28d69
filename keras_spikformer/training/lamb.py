"""timm's LAMB optimizer, the one the Spike-driven Transformer references train with.

`keras.optimizers.Lamb` differs from timm's `Lamb` in three ways that matter
for these recipes: it decays weights outside the trust ratio (decoupled), it
applies the trust ratio to every variable (biases and batch-norm parameters
too, so zero-initialised ones barely move), and it cannot cap the ratio.
`TimmLamb` follows timm (`timm.optim.Lamb`, You et al. 2019):

    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2        (g: globally clipped)
    u = (m / (1 - b1^t)) / (sqrt(v) / sqrt(1 - b2^t) + eps)
    decayed variables:  u += wd * w;  u *= r,  r = ||w|| / ||u||  (1 if a norm is 0;
                        min(r, 1) with `trust_clip`)
    w -= lr * u

Variables excluded from weight decay (`exclude_from_weight_decay`, timm's
1-D rule) take the plain Adam step `u`, as timm's `always_adapt=False`.

Example:
>>> opt = TimmLamb(learning_rate=1e-3, weight_decay=0.05, trust_clip=True)
>>> opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_spikformer")
class TimmLamb(keras.optimizers.Optimizer):
    """timm's `Lamb` (see the module docstring).

    Args:
        learning_rate: float or schedule.
        beta_1, beta_2: moment decay rates (timm: 0.9, 0.999).
        epsilon: added to the denominator (timm: 1e-6).
        weight_decay: L2 factor inside the trust ratio for decayed variables.
        trust_clip: bool, cap the trust ratio at 1 (timm's `trust_clip`).
        global_clipnorm: gradient clip by global norm (timm's
            `max_grad_norm`, 1.0); `None` for no clip.
        name: optimizer name.
        **kwargs: the other `keras.optimizers.Optimizer` arguments.
    """

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-6,
        weight_decay=0.01,
        trust_clip=False,
        global_clipnorm=1.0,
        name="timm_lamb",
        **kwargs,
    ):
        super().__init__(
            learning_rate=learning_rate,
            global_clipnorm=global_clipnorm,
            name=name,
            **kwargs,
        )
        if weight_decay is not None and float(weight_decay) < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}.")
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        # Kept apart from the base class's `weight_decay`, which would decay
        # the weights a second time, outside the trust ratio.
        self.lamb_weight_decay = float(weight_decay or 0.0)
        self.trust_clip = bool(trust_clip)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(
            var_list, ["momentum", "velocity"]
        )

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        self.assign(m, m * self.beta_1 + gradient * (1.0 - self.beta_1))
        self.assign(v, v * self.beta_2 + ops.square(gradient) * (1.0 - self.beta_2))
        correction_1 = 1.0 - ops.power(ops.cast(self.beta_1, dtype), step)
        correction_2 = 1.0 - ops.power(ops.cast(self.beta_2, dtype), step)
        denominator = ops.sqrt(v) / ops.sqrt(correction_2) + self.epsilon
        update = (m / correction_1) / denominator
        if self.lamb_weight_decay > 0 and self._use_weight_decay(variable):
            update = update + self.lamb_weight_decay * variable
            w_norm = ops.sqrt(ops.sum(ops.square(variable)))
            u_norm = ops.sqrt(ops.sum(ops.square(update)))
            ratio = ops.where(
                w_norm > 0, ops.where(u_norm > 0, w_norm / u_norm, 1.0), 1.0
            )
            if self.trust_clip:
                ratio = ops.minimum(ratio, 1.0)
            update = update * ratio
        self.assign_sub(variable, lr * update)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "weight_decay": self.lamb_weight_decay,
                "trust_clip": self.trust_clip,
            }
        )
        return config
