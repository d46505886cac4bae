"""Device profiles: does a bundle fit a part (flash, RAM) before it runs?

A profile is a part's flash, RAM and clock. Built-ins cover a Cortex-M4 class MCU, a Cortex-M7
and a Raspberry Pi 4; users add their own as JSON (``{"name": ..., "flash_bytes": ...,
"ram_bytes": ..., "clock_hz": ...}``). :func:`check_fit` compares the bundle's flash (model
bytes) and tensor arena plus the runtime's own buffers (:func:`runtime_buffer_bytes`) against
the part and returns every figure, so a refusal can show them.

Device side: stdlib and numpy only.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from edgecnn.config import SpectrogramConfig
from edgecnn.errors import ConfigError

KB, MB = 1024, 1024 * 1024


@dataclasses.dataclass(frozen=True, kw_only=True)
class DeviceProfile:
    """One target part."""

    name: str
    """Short name (``cortex-m4``)."""
    flash_bytes: int
    """Non-volatile memory for the model and code."""
    ram_bytes: int
    """RAM for the tensor arena and the runtime's buffers."""
    clock_hz: float
    """CPU clock (for information and load scaling)."""
    description: str = ""
    cycles_per_mac: float | None = None
    """Assumed cycles per int8 multiply-accumulate of the model (for :func:`estimate_latency`)."""
    dsp_cycles_per_frame: float | None = None
    """Assumed cycles for one STFT frame (mean, window, 256-point real FFT, magnitude, log)."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"device profile: name={self.name!r} must be a non-empty string")
        for key in ("flash_bytes", "ram_bytes"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"device profile {self.name!r}: {key}={value!r} must be an integer > 0")
        clock = self.clock_hz
        if not isinstance(clock, (int, float)) or isinstance(clock, bool) or not clock > 0:
            raise ConfigError(f"device profile {self.name!r}: clock_hz={clock!r} must be a number > 0")
        for key in ("cycles_per_mac", "dsp_cycles_per_frame"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)
                                      or not value > 0):
                raise ConfigError(f"device profile {self.name!r}: {key}={value!r} must be a number > 0 "
                                  "or absent")


# Latency assumptions of the built-ins (estimates, not measurements; see estimate_latency):
# - Cortex-M4F with CMSIS-NN int8 kernels: the SIMD dual 16-bit MAC (SMLAD) peaks at 2 MACs per
#   cycle; with im2col, requantisation and the convolutions' edges about 1 MAC per 2 cycles is
#   the sustained rate of small CNNs. One frame: arm_mean, arm_offset, arm_mult (256 samples),
#   arm_rfft_fast_f32 (256), arm_cmplx_mag (129 square roots), a log10 per bin: ~15 k cycles.
# - Cortex-M7 (dual issue, same instructions): ~1 cycle per MAC, ~8 k cycles per frame.
# - Raspberry Pi 4 (Cortex-A72, NEON, XNNPACK int8): ~0.25 cycles per MAC, ~4 k cycles per frame.
BUILTIN = {
    p.name: p for p in (
        DeviceProfile(name="cortex-m4", flash_bytes=256 * KB, ram_bytes=64 * KB, clock_hz=80e6,
                      description="Cortex-M4F class MCU (e.g. STM32L4): 256 KB flash, 64 KB RAM, 80 MHz",
                      cycles_per_mac=2.0, dsp_cycles_per_frame=15_000),
        DeviceProfile(name="cortex-m7", flash_bytes=1 * MB, ram_bytes=512 * KB, clock_hz=480e6,
                      description="Cortex-M7 class MCU (e.g. STM32H7): 1 MB flash, 512 KB RAM, 480 MHz",
                      cycles_per_mac=1.0, dsp_cycles_per_frame=8_000),
        DeviceProfile(name="raspberry-pi-4", flash_bytes=8 * 1024 * MB, ram_bytes=1024 * MB, clock_hz=1.5e9,
                      description="Raspberry Pi 4 (smallest 1 GB model, 8 GB SD budget), 1.5 GHz",
                      cycles_per_mac=0.25, dsp_cycles_per_frame=4_000),
    )
}


def load_profile(name_or_path: str | Path) -> DeviceProfile:
    """A built-in profile by name, or a user profile from a JSON file."""
    text = str(name_or_path)
    if text in BUILTIN:
        return BUILTIN[text]
    path = Path(text)
    if not path.is_file():
        raise ConfigError(f"device profile {text!r} is neither a built-in ({', '.join(BUILTIN)}) "
                          "nor a JSON file")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"device profile {path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"device profile {path}: must be a JSON object, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(DeviceProfile)}
    required = {"name", "flash_bytes", "ram_bytes", "clock_hz"}  # the latency assumptions are optional
    unknown, missing = sorted(set(data) - known), sorted(required - set(data))
    if unknown or missing:
        raise ConfigError(f"device profile {path}: unknown keys {unknown}, missing keys {missing}")
    try:
        return DeviceProfile(**data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def runtime_buffer_bytes(cfg: SpectrogramConfig, *, block: int, input_itemsize: int = 1,
                         n_classes: int = 2, smooth: int = 6, dsp: str | None = None) -> dict[str, int]:
    """RAM the streaming runtime needs besides the tensor arena, as a C port of this design lays
    it out: two DMA half-buffers of int16, the sample history of one frame plus a block (float32;
    int16 counts for ``cmsis-q15``), the DSP's per-frame buffers, the rolling image stored in the
    model input's type (columns quantised on arrival) and the smoothing history.

    Without ``dsp`` the FFT scratch is a float32 complex frame; with ``cmsis-f32``/``cmsis-q15``
    it is that backend's working buffers (``dsp_backends.working_memory_bytes``: frame, FFT
    output, magnitude, instance). ``numpy`` is the host's float64 reference and counts as the
    float32 port. The backend's constant tables go to flash: :func:`dsp_flash_bytes`.
    """
    if dsp in (None, "numpy"):
        history, scratch = (cfg.nperseg + block) * 4, {"fft_scratch": 2 * cfg.nperseg * 4}
    else:
        from firmware_sim.dsp_backends import working_memory_bytes

        history = (cfg.nperseg + block) * (2 if dsp == "cmsis-q15" else 4)
        scratch = {f"dsp_{dsp}_working": working_memory_bytes(dsp, cfg)["ram_total"]}
    envelope = {}
    if cfg.feature == "envelope":  # the last envelope_frames frames' values, float32
        envelope = {"envelope_history": cfg.envelope_frames * cfg.envelope_per_frame * 4}
        if "fft_scratch" in scratch:  # a complex frame, reused by the envelope spectrum's rfft
            scratch["fft_scratch"] = 2 * max(cfg.nperseg, cfg.envelope_nfft) * 4
    return {
        "dma_buffers": 2 * block * 2,
        "sample_history": history,
        **scratch,
        **envelope,
        "rolling_image": cfg.image_rows * cfg.image_cols * input_itemsize,
        "smoothing": smooth * n_classes * 4,
    }


def dsp_flash_bytes(cfg: SpectrogramConfig, dsp: str | None) -> dict[str, int]:
    """Flash of a DSP backend's constant tables (window, FFT twiddles): ``{}`` for the float port."""
    if dsp in (None, "numpy"):
        return {}
    from firmware_sim.dsp_backends import working_memory_bytes

    memory = working_memory_bytes(dsp, cfg)
    return {f"dsp_{dsp}_window_table": memory["window_table"], f"dsp_{dsp}_fft_tables": memory["fft_tables"]}


@dataclasses.dataclass(frozen=True)
class FitReport:
    """The figures of a fit check; ``fits`` is the verdict."""

    profile: DeviceProfile
    model_bytes: int
    arena_bytes: int
    buffers: dict[str, int]
    tables: dict[str, int] = dataclasses.field(default_factory=dict)
    """Constant tables in flash besides the model (the DSP backend's window and FFT tables)."""

    @property
    def flash_needed(self) -> int:
        return self.model_bytes + sum(self.tables.values())

    @property
    def ram_needed(self) -> int:
        return self.arena_bytes + sum(self.buffers.values())

    @property
    def fits(self) -> bool:
        return self.flash_needed <= self.profile.flash_bytes and self.ram_needed <= self.profile.ram_bytes

    def describe(self) -> str:
        p = self.profile
        verdict = "fits" if self.fits else "does NOT fit"
        tables = f" (model {self.model_bytes:,} + DSP tables {sum(self.tables.values()):,})" if self.tables else ""
        return (f"{p.name}: {verdict}: flash {self.flash_needed:,}{tables} of {p.flash_bytes:,} bytes; RAM "
                f"{self.ram_needed:,} of {p.ram_bytes:,} bytes (arena {self.arena_bytes:,} + runtime "
                f"buffers {sum(self.buffers.values()):,})")

    def to_json(self) -> dict:
        return {"profile": dataclasses.asdict(self.profile), "fits": self.fits,
                "flash_needed": self.flash_needed, "ram_needed": self.ram_needed,
                "arena_bytes": self.arena_bytes, "buffers": dict(self.buffers), "model_bytes": self.model_bytes,
                "flash_tables": dict(self.tables)}


def check_fit(profile: DeviceProfile, *, flash_bytes: int, arena_bytes: int,
              buffers: dict[str, int], tables: dict[str, int] | None = None) -> FitReport:
    """Compare a bundle's flash (model plus DSP ``tables``) and arena plus the runtime buffers with a part."""
    return FitReport(profile, int(flash_bytes), int(arena_bytes), dict(buffers), dict(tables or {}))


def estimate_latency(profile: DeviceProfile, cfg: SpectrogramConfig, *, macs: int,
                     every_frames: int = 14) -> dict:
    """An ESTIMATE of the model's inference time and the device's load on ``profile``: not a
    measurement. Assumptions: inference = ``macs`` x ``profile.cycles_per_mac`` cycles at
    ``profile.clock_hz`` (kernels' overheads folded into cycles per MAC; no memory stalls beyond
    that); features = ``profile.dsp_cycles_per_frame`` per STFT frame, one frame per hop; one
    decision every ``every_frames`` frames. Returns the figures and the assumptions, or
    ``{"estimate": None, "reason": ...}`` when the profile carries no latency assumptions."""
    if profile.cycles_per_mac is None or profile.dsp_cycles_per_frame is None:
        return {"profile": profile.name, "estimate": None,
                "reason": "the profile gives no cycles_per_mac / dsp_cycles_per_frame"}
    inference_s = macs * profile.cycles_per_mac / profile.clock_hz
    frame_s = profile.dsp_cycles_per_frame / profile.clock_hz
    decision_period_s = every_frames * cfg.frame_period_s
    load = (inference_s + every_frames * frame_s) / decision_period_s
    return {
        "profile": profile.name, "estimate": True,
        "inference_ms": round(inference_s * 1e3, 3),
        "dsp_ms_per_frame": round(frame_s * 1e3, 4),
        "decision_period_ms": round(decision_period_s * 1e3, 2),
        "cpu_load": round(load, 5),
        "assumptions": {"macs": int(macs), "cycles_per_mac": profile.cycles_per_mac,
                        "dsp_cycles_per_frame": profile.dsp_cycles_per_frame,
                        "clock_hz": profile.clock_hz, "every_frames": every_frames},
    }
