"""One error hierarchy for edgecnn.

Every error a user can cause (bad files, bad options, bad bundles) is an ``EdgeCNNError``;
the CLI turns it into one line on stderr and exit code 2. Messages name the value and the fix.
"""


class EdgeCNNError(Exception):
    """Base class of every error edgecnn raises on purpose."""


class ConfigError(EdgeCNNError, ValueError):
    """A configuration value (DSP config, option, label map, device profile) is invalid."""


class InputError(EdgeCNNError, ValueError):
    """A recording, data file or stream is malformed, unreadable or unsafe."""


class BundleError(EdgeCNNError):
    """A bundle is incomplete, tampered with, or of an unknown schema or feature version."""
