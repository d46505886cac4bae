"""Driving the generated C library from Python: the host build through ctypes, the MCU build on QEMU.

``HostDSP`` wraps the shared library ``export.firmware_build.build_host_library`` makes from a
generated ``firmware/`` folder (``export.firmware_measure`` runs the MCU build on QEMU).
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np
import pytest

from export import firmware_build

#: ``make firmware-test`` sets it: missing tools then fail the tests instead of skipping them.
REQUIRE_ENV = "EDGECNN_REQUIRE_FIRMWARE"


def require_tools(*, mcu: bool) -> None:
    missing = firmware_build.missing_tools(mcu=mcu)
    if missing:
        message = f"firmware toolchain missing: {', '.join(missing)} (apt-get install {firmware_build.ARM_PACKAGES})"
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(message)
        pytest.skip(message)


class _Event(ctypes.Structure):
    _fields_ = [("decision", ctypes.c_uint32), ("sample_index", ctypes.c_uint64), ("previous", ctypes.c_int),
                ("state", ctypes.c_int), ("smoothed", ctypes.c_double)]


class HostDSP:
    """One ``edgecnn_dsp_t`` and one ``edgecnn_decider_t`` of the host-built library."""

    def __init__(self, library: Path, cfg, n_classes: int) -> None:
        lib = ctypes.CDLL(str(library))
        self.lib, self.n_classes, self.hop = lib, n_classes, cfg.hop
        self.rows, self.cols = cfg.input_shape[0], cfg.input_shape[1]
        lib.edgecnn_dsp_state_bytes.restype = ctypes.c_size_t
        lib.edgecnn_decider_state_bytes.restype = ctypes.c_size_t
        lib.edgecnn_dsp_push.restype = ctypes.c_int
        lib.edgecnn_dsp_push.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_int,
                                         ctypes.POINTER(ctypes.c_float), ctypes.c_int,
                                         ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)]
        lib.edgecnn_dsp_window_end.restype = ctypes.c_uint64
        lib.edgecnn_quantize_input.restype = ctypes.c_int8
        lib.edgecnn_quantize_input.argtypes = [ctypes.c_float]
        lib.edgecnn_decide.restype = ctypes.c_int
        lib.edgecnn_decide.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int8), ctypes.c_uint64,
                                       ctypes.POINTER(ctypes.c_float), ctypes.POINTER(_Event)]
        # double arrays: 8-byte aligned storage for the state structs
        self.state = (ctypes.c_double * (lib.edgecnn_dsp_state_bytes() // 8 + 1))()
        self.decider = (ctypes.c_double * (lib.edgecnn_decider_state_bytes() // 8 + 1))()
        self.reset()

    def reset(self) -> None:
        self.lib.edgecnn_dsp_init(self.state)
        self.lib.edgecnn_decider_init(self.decider)

    def push(self, samples: np.ndarray, max_columns: int = 1 << 20) -> tuple[int, np.ndarray, bool]:
        """(samples consumed, new float columns (k, rows), decision due)."""
        samples = np.ascontiguousarray(samples, dtype=np.float32)
        room = min(max_columns, samples.size // self.hop + 1)
        columns = np.zeros((room, self.rows), dtype=np.float32)
        made, due = ctypes.c_int(), ctypes.c_int()
        used = self.lib.edgecnn_dsp_push(self.state, samples.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                         samples.size, columns.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                         room, ctypes.byref(made), ctypes.byref(due))
        return used, columns[:made.value], bool(due.value)

    def input_tensor(self) -> np.ndarray:
        out = np.zeros(self.rows * self.cols, dtype=np.int8)
        self.lib.edgecnn_dsp_write_input(self.state, out.ctypes.data_as(ctypes.POINTER(ctypes.c_int8)))
        return out.reshape(self.rows, self.cols)

    def window_end(self) -> int:
        return int(self.lib.edgecnn_dsp_window_end(self.state))

    def quantize(self, values: np.ndarray) -> np.ndarray:
        return np.array([self.lib.edgecnn_quantize_input(float(v)) for v in np.ravel(values)], dtype=np.int8)

    def decide(self, output: np.ndarray, sample_index: int) -> tuple[np.ndarray, _Event | None]:
        output = np.ascontiguousarray(output, dtype=np.int8).ravel()
        probabilities = np.zeros(self.n_classes, dtype=np.float32)
        event = _Event()
        changed = self.lib.edgecnn_decide(self.decider, output.ctypes.data_as(ctypes.POINTER(ctypes.c_int8)),
                                          sample_index, probabilities.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                          ctypes.byref(event))
        return probabilities, (event if changed else None)


def window_features(dsp: HostDSP, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A fresh stream of one window: its float feature image (rows, cols) and int8 input tensor."""
    dsp.reset()
    used, columns, due = dsp.push(window)
    # the first decision is due once the window's last frame (ending at sample window_end) is complete
    assert due and used == dsp.window_end() <= window.size, "one window must complete the first decision"
    return columns.T, dsp.input_tensor()
