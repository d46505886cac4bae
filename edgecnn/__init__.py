"""edgecnn: vibration recordings in, a deployable int8 spectrogram CNN out.

This package's top level imports only numpy/scipy-based modules: the device side
(``firmware_sim``) imports ``edgecnn.config`` and ``edgecnn.dsp`` and must never pull in
TensorFlow through here.
"""

from edgecnn.config import FEATURE_VERSION, SpectrogramConfig
from edgecnn.errors import BundleError, ConfigError, EdgeCNNError, InputError

__version__ = "0.1.0"

__all__ = [
    "FEATURE_VERSION",
    "BundleError",
    "ConfigError",
    "EdgeCNNError",
    "InputError",
    "SpectrogramConfig",
    "__version__",
]
