"""The one error type of the fetch package."""

from keras_spikformer.presets import PresetError


class FetchError(PresetError):
    """Weights that cannot be fetched, verified or found in the cache.

    The message names the URL, the cache path and the manual route.
    """
