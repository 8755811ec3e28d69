"""Surrogate spike functions: a Heaviside step forward, a smooth gradient backward."""

import math

import keras
from keras import ops

_PACKAGE = "keras_spikformer"


class Surrogate:
    """Base class of surrogate spike functions.

    Calling the object on a tensor `x` (membrane potential minus threshold)
    returns `1.0` where `x >= 0` and `0.0` elsewhere (ties fire, as in
    SpikingJelly); its gradient is `derivative(x)` instead of a Dirac delta.

    Subclasses implement `derivative` and list their hyper-parameters in
    `get_config`.
    """

    name = None

    def derivative(self, x):
        raise NotImplementedError

    def __call__(self, x):
        @ops.custom_gradient
        def spike(x):
            def grad(*args, upstream=None):
                if upstream is None:
                    (upstream,) = args
                return upstream * self.derivative(x)

            return ops.cast(ops.greater_equal(x, 0), x.dtype), grad

        return spike(x)

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((type(self).__name__, tuple(sorted(self.get_config().items()))))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SigmoidSurrogate(Surrogate):
    """Sigmoid surrogate (SpikingJelly `surrogate.Sigmoid`, Spikformer's default).

    Gradient: `alpha * sigmoid(alpha * x) * (1 - sigmoid(alpha * x))`.

    Args:
        alpha: float, steepness of the sigmoid. Defaults to `4.0`.

    Example:
    >>> spike = SigmoidSurrogate(alpha=4.0)
    >>> spike(keras.ops.convert_to_tensor([-0.5, 0.0, 0.5]))  # [0., 1., 1.]
    """

    name = "sigmoid"

    def __init__(self, alpha=4.0):
        self.alpha = float(alpha)

    def derivative(self, x):
        sg = ops.sigmoid(self.alpha * x)
        return self.alpha * sg * (1.0 - sg)

    def get_config(self):
        return {"alpha": self.alpha}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ATanSurrogate(Surrogate):
    """Arc-tangent surrogate (SpikingJelly `surrogate.ATan`).

    Gradient: `alpha / 2 / (1 + (pi / 2 * alpha * x) ** 2)`.

    Args:
        alpha: float, width parameter. Defaults to `2.0`.

    Example:
    >>> spike = ATanSurrogate()
    """

    name = "atan"

    def __init__(self, alpha=2.0):
        self.alpha = float(alpha)

    def derivative(self, x):
        return self.alpha / 2.0 / (1.0 + ops.square(math.pi / 2.0 * self.alpha * x))

    def get_config(self):
        return {"alpha": self.alpha}


_BY_NAME = {cls.name: cls for cls in (SigmoidSurrogate, ATanSurrogate)}


def get(identifier):
    """Resolves a surrogate from a name, a config dict or an instance.

    Args:
        identifier: `"sigmoid"`, `"atan"`, a `Surrogate` instance, or the dict
            written by `serialize`.

    Returns:
        A `Surrogate` instance.

    Example:
    >>> get("atan")
    ATanSurrogate(alpha=2.0)
    """
    if isinstance(identifier, Surrogate):
        return identifier
    if isinstance(identifier, str):
        key = identifier.lower()
        if key not in _BY_NAME:
            raise ValueError(
                f"Unknown surrogate {identifier!r}. Use one of {sorted(_BY_NAME)} "
                "or pass a `keras_spikformer.neurons.Surrogate` instance."
            )
        return _BY_NAME[key]()
    if isinstance(identifier, dict):
        found = keras.saving.deserialize_keras_object(identifier, safe_mode=True)
        if not isinstance(found, Surrogate):
            raise TypeError(
                f"`surrogate` {identifier.get('class_name')!r} is a "
                f"{type(found).__name__}, not a keras_spikformer Surrogate. Use one of "
                f"{sorted(_BY_NAME)} or a registered Surrogate subclass."
            )
        return found
    raise TypeError(
        f"`surrogate` must be a name, a dict or a Surrogate; got {identifier!r}."
    )


def serialize(surrogate):
    """Returns a JSON-friendly form: the name for defaults, else a config dict."""
    if isinstance(surrogate, str):
        return surrogate.lower()
    if type(surrogate) in _BY_NAME.values() and surrogate == type(surrogate)():
        return surrogate.name
    return keras.saving.serialize_keras_object(surrogate)
