"""Export: a trained run directory becomes a deployable bundle, and bundles are read back.

``export.bundle`` is the TF-free reader (and the manifest schema) that the device side uses;
``export.writer.export_bundle`` writes a bundle and imports TensorFlow lazily, inside the call.

This package ``__init__`` must never import anything: the device side imports ``export.bundle``
and must not load TensorFlow, tf2onnx or keras through it.
"""
