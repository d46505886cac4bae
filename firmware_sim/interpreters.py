"""Interpreters behind one small interface: ``load(path, entry)``, ``run(image) -> probabilities``,
``name``, ``close()``.

- ``litert``: ai-edge-litert (the default on Linux edge boards; XNNPACK);
- ``tflm``: tflite-micro's Python runtime, the microcontroller's reference kernels (slow, exact);
  it also reports the tensor arena it really allocated (:meth:`TFLMInterpreter.arena_bytes`);
- ``onnxruntime``: float or int8 (QDQ) ONNX;
- ``tflite-runtime``: the legacy tflite-runtime wheel, where it is installed (needs numpy < 2).

The input image (float32 features from the bundle's DSP config) is quantised and the output
dequantised with the scale and zero point the bundle manifest gives for that model file
(``TensorSpec.quantize`` / ``dequantize``); nothing here reads library defaults.

Device side: no TensorFlow. Each runtime package is imported only when that runtime is chosen.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from edgecnn.errors import ConfigError, InputError
from export.bundle import quantize

#: Runtime name -> the model format it runs.
RUNTIME_FORMATS = {"litert": "tflite", "tflm": "tflite", "onnxruntime": "onnx", "tflite-runtime": "tflite"}


class Interpreter:
    """Base class: quantise the input, ``_invoke``, dequantise the output."""

    name = "base"

    def __init__(self) -> None:
        self.entry = None
        self.path: Path | None = None
        self._qbuf = None

    def load(self, path: str | Path, entry) -> Interpreter:
        """Open the model file described by ``entry`` (an ``export.bundle.ModelEntry``)."""
        self.path, self.entry = Path(path), entry
        self._shape = tuple(1 if d == -1 else d for d in entry.input.shape)  # one image's input shape
        self._size = int(np.prod(self._shape))
        if RUNTIME_FORMATS[self.name] != entry.format:
            raise ConfigError(f"runtime {self.name} runs {RUNTIME_FORMATS[self.name]} models, "
                              f"not {entry.format} ({entry.file})")
        self._open()
        return self

    def run(self, features: np.ndarray) -> np.ndarray:
        """One image (n_freq, n_frames, 1) float32 -> class probabilities, float32 (n_classes,)."""
        spec = self.entry.input
        x = np.asarray(features, dtype=np.float32)
        shape = self._shape
        if x.size != self._size:
            raise InputError(
                f"{self.name}: features of shape {x.shape} do not fit the model input {spec.shape}")
        q = self._quantize(x.reshape(shape))
        y = self._invoke(q)
        return self.entry.output.dequantize(np.asarray(y)).reshape(-1).astype(np.float32)

    def _quantize(self, x: np.ndarray) -> np.ndarray:
        """``entry.input.quantize(x)`` (``export.bundle.quantize``, the one definition) in buffers kept
        between calls: the device loop quantises one image per decision."""
        spec = self.entry.input
        if spec.scale is None:
            return x
        if self._qbuf is None or self._qbuf[0].shape != x.shape:
            self._qbuf = (np.empty(x.shape, dtype=np.float64), np.empty(x.shape, dtype=np.float64))
        return quantize(x, spec.scale, spec.zero_point, spec.dtype, scratch=self._qbuf)

    def run_batch(self, features: np.ndarray, *, max_batch: int | None = None) -> np.ndarray:
        """Many images (B, n_freq, n_frames[, 1]) float32 -> probabilities (B, n_classes) float32.

        Row b equals ``run(features[b])``: the same quantisation, then invokes of up to
        ``max_batch`` images (all B when None) where the runtime can take a batch
        (``batch_capable``; a short last chunk is padded so the model is planned once), else
        one invoke per image."""
        spec = self.entry.input
        x = np.asarray(features, dtype=np.float32)
        per_image = int(np.prod([d for d in spec.shape[1:] if d != -1]))
        if x.ndim < 1 or x.shape[0] == 0 or x.size != x.shape[0] * per_image:
            raise InputError(f"{self.name}: a batch of shape {x.shape} does not fit the model input "
                             f"{spec.shape} (B images of {per_image} values)")
        batch = x.shape[0]
        chunk = batch if max_batch is None else max(1, min(int(max_batch), batch))
        q = self._quantize(x.reshape((batch, *spec.shape[1:])))
        if chunk > 1 and self.batch_capable(chunk):
            pieces = []
            for first in range(0, batch, chunk):
                piece = q[first:first + chunk]
                short = chunk - piece.shape[0]
                if short:
                    piece = np.concatenate((piece, np.zeros((short, *piece.shape[1:]), dtype=piece.dtype)))
                pieces.append(np.asarray(self._invoke_batch(piece)).reshape(chunk, -1)[:chunk - short])
            y = np.concatenate(pieces)
        else:
            y = np.concatenate([np.asarray(self._invoke(q[b:b + 1])).reshape(1, -1) for b in range(batch)])
        return self.entry.output.dequantize(y).reshape(batch, -1).astype(np.float32)

    def batch_capable(self, batch: int) -> bool:
        """True when one invoke can take ``batch`` images (overridden per runtime)."""
        return batch == 1

    def _invoke_batch(self, x: np.ndarray) -> np.ndarray:
        return self._invoke(x)

    def close(self) -> None:
        """Release the runtime (the interpreter cannot run afterwards)."""

    def __enter__(self) -> Interpreter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _open(self) -> None:
        raise NotImplementedError

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class TFLiteInterpreter(Interpreter):
    """The TFLite interpreter API (``ai_edge_litert`` or ``tflite_runtime``)."""

    name = "litert"
    module = "ai_edge_litert.interpreter"

    def _open(self) -> None:
        import importlib

        try:
            api = importlib.import_module(self.module)
        except ImportError as exc:
            raise ConfigError(f"runtime {self.name} is not installed ({exc}); "
                              f"choose another --runtime") from None
        def create() -> None:
            self._interp = api.Interpreter(model_path=str(self.path), num_threads=1)
            self._interp.allocate_tensors()

        try:
            # LiteRT announces its XNNPACK delegate on fd 2 from native code: keep the console clean.
            _capture_native(create)
        except (RuntimeError, ValueError) as exc:
            raise InputError(f"{self.path}: {self.name} cannot load the model ({exc})") from None
        self._in = self._interp.get_input_details()[0]["index"]
        self._out = self._interp.get_output_details()[0]["index"]

        self._batch = 1
        self._refused: set[int] = set()

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        if self._batch != 1:
            self._resize(1)
        self._interp.set_tensor(self._in, x)
        self._interp.invoke()
        return self._interp.get_tensor(self._out)

    def batch_capable(self, batch: int) -> bool:
        """The bundle's TFLite models have a fixed batch of 1, but the interpreter can resize the
        input to (batch, ...) and re-plan; XNNPACK refuses that for some models (the seed int8
        model), which is remembered, and those batches run image by image."""
        if batch == self._batch:
            return True
        if batch in self._refused:
            return False
        try:
            self._resize(batch)
        except (RuntimeError, ValueError):
            self._refused.add(batch)
            self._resize(1)
            return False
        return True

    def _resize(self, batch: int) -> None:
        shape = [batch, *self._interp.get_input_details()[0]["shape"][1:]]
        self._interp.resize_tensor_input(self._in, shape, strict=False)
        self._interp.allocate_tensors()
        self._batch = batch

    def _invoke_batch(self, x: np.ndarray) -> np.ndarray:
        self._interp.set_tensor(self._in, x)
        self._interp.invoke()
        return self._interp.get_tensor(self._out)

    def close(self) -> None:
        self._interp = None


class TFLiteRuntimeInterpreter(TFLiteInterpreter):
    name = "tflite-runtime"
    module = "tflite_runtime.interpreter"


class TFLMInterpreter(Interpreter):
    """tflite-micro's reference kernels (as on a microcontroller)."""

    name = "tflm"

    def _open(self) -> None:
        try:
            from tflite_micro import runtime
        except ImportError as exc:
            raise ConfigError(f"runtime tflm is not installed ({exc}); choose another --runtime") from None
        try:
            self._interp = runtime.Interpreter.from_file(str(self.path))
        except (RuntimeError, ValueError) as exc:
            raise InputError(f"{self.path}: tflite-micro cannot load the model ({exc})") from None

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        self._interp.set_input(x, 0)
        self._interp.invoke()
        return self._interp.get_output(0)

    def arena_bytes(self) -> int | None:
        """The arena tflite-micro actually allocated (parsed from its native allocation report)."""
        text = _capture_native(self._interp.print_allocations)
        for line in text.splitlines():
            if "Arena allocation total" in line:
                return int(line.split("total")[1].split()[0])
        return None

    def close(self) -> None:
        self._interp = None


class OnnxInterpreter(Interpreter):
    name = "onnxruntime"

    def _open(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ConfigError(
                f"runtime onnxruntime is not installed ({exc}); choose another --runtime") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise InputError(f"{self.path}: onnxruntime cannot load the model ({exc})") from None
        self._input = self._session.get_inputs()[0].name

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: x})[0]

    def batch_capable(self, batch: int) -> bool:
        # The bundle's ONNX models have a symbolic batch dimension.
        return True

    def _invoke_batch(self, x: np.ndarray) -> np.ndarray:
        return self._invoke(x)

    def close(self) -> None:
        self._session = None


RUNTIMES = {cls.name: cls for cls in (TFLiteInterpreter, TFLMInterpreter, OnnxInterpreter,
                                       TFLiteRuntimeInterpreter)}


def open_interpreter(runtime: str, bundle, *, dtype: str = "int8") -> Interpreter:
    """The interpreter ``runtime`` on the bundle's model of that runtime's format and ``dtype``."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"--runtime {runtime!r} is not one of {sorted(RUNTIMES)}")
    entry = bundle.model(format=RUNTIME_FORMATS[runtime], dtype=dtype)
    return RUNTIMES[runtime]().load(bundle.model_path(entry), entry)


def _capture_native(fn) -> str:
    """Run ``fn`` with file descriptors 1 and 2 redirected: native code prints past sys.stdout."""
    import ctypes
    import sys

    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(tmp.fileno(), 1)
            os.dup2(tmp.fileno(), 2)
            fn()
        finally:
            libc.fflush(None)  # C stdio buffers must reach the file before the descriptors go back
            for fd, copy in ((1, saved[0]), (2, saved[1])):
                os.dup2(copy, fd)
                os.close(copy)
        tmp.seek(0)
        return tmp.read().decode(errors="replace")
