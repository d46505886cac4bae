"""firmware_sim: the device side of edgecnn, a streaming on-device runtime simulated in Python.

Device side: no TensorFlow. Nothing in this package (nor anything it imports: ``edgecnn.config``,
``edgecnn.dsp``, ``edgecnn.errors``, ``edgecnn.synth``, ``edgecnn.readers``, ``export.bundle``) may
import TensorFlow, tf2onnx or keras; a test imports the package in a subprocess and checks
``sys.modules``.

One role per module, in data-flow order:
``sources`` (blocks with sequence numbers) -> ``streaming_stft`` (a frame's sample history, new
frames only, rolling image) -> ``interpreters`` (litert, tflm, onnxruntime,
tflite-runtime) -> ``decisions`` (smoothing, hysteresis, events) and ``timing`` (load, deadlines);
``profiles`` checks that a bundle fits a part; ``runtime`` wires the loop.

This ``__init__`` imports nothing heavy: import the modules you need.
"""
