"""One module per CLI command: ``register(subparsers)`` adds its parser, ``run(args)`` does the work.

These modules stay light at import time (no TensorFlow at module level) so that ``edgecnn --help``
and the device-side commands start fast and never load TensorFlow.
"""
