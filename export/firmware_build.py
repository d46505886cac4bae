"""Building and running the generated firmware: host shared library (gcc) and Cortex-M4 image (QEMU).

The generated library (``export.firmware``) is plain C99 plus one C++ file for TFLM. This module
compiles it the two ways the tests and ``edgecnn firmware --measure`` need:

- **host**: the system ``gcc -std=c99 -Wall -Wextra -Werror`` against CMSIS-DSP's C sources, as a
  shared library driven from Python with ctypes;
- **Cortex-M4**: Debian's ``arm-none-eabi`` toolchain (``-mcpu=cortex-m4 -mfloat-abi=hard
  -mfpu=fpv4-sp-d16``), TFLM built from the pinned tree with CMSIS-NN kernels, newlib with
  semihosting (``rdimon``), run on ``qemu-system-arm -M mps2-an386`` with ``-icount shift=0`` so
  the board's 25 MHz timer counts guest instructions (1 tick = 40 instructions).

Third-party sources are never copied into the repository: they are unpacked from
``$EDGECNN_THIRD_PARTY`` (default ``../shared/third_party`` beside the checkout) into a build
folder (``$EDGECNN_FIRMWARE_BUILD``, default ``build/firmware`` in the checkout, ignored by git)
and cached there, keyed by the compiler flags.

Host-side tooling: subprocess and the standard library only; never imported by the device side.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

from edgecnn.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
CMSIS_DSP_ARCHIVE = "cmsisdsp-1.10.3.tar.gz"
TFLM_ARCHIVE = "tflm-tree-cmsis-nn.tar.gz"
#: The CMSIS-DSP C files the float path links (rfft_fast on top of the radix-8 cfft, their tables).
CMSIS_DSP_SOURCES = (
    "Source/TransformFunctions/arm_rfft_fast_f32.c",
    "Source/TransformFunctions/arm_rfft_fast_init_f32.c",
    "Source/TransformFunctions/arm_cfft_f32.c",
    "Source/TransformFunctions/arm_cfft_init_f32.c",
    "Source/TransformFunctions/arm_cfft_radix8_f32.c",
    "Source/TransformFunctions/arm_bitreversal2.c",
    "Source/CommonTables/arm_common_tables.c",
    "Source/CommonTables/arm_const_structs.c",
)
#: ``__GNUC_PYTHON__``: CMSIS-DSP's generic C build (what its Python wrapper compiles with), which
#: needs no CMSIS Core headers. Used on the host and on the Cortex-M4 alike: the float path uses no
#: DSP-extension intrinsics, and the pinned TFLM tree's CMSIS Core lacks the m-profile headers
#: arm_math.h would otherwise pull in (a q15 path would need them).
DSP_DEFINES = ("-D__GNUC_PYTHON__",)
HOST_CFLAGS = ("-std=c99", "-O2", "-fPIC", "-ffp-contract=off", *DSP_DEFINES)
STRICT = ("-Wall", "-Wextra", "-Werror")
MCU_ARCH = ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16")
MCU_COMMON = (*MCU_ARCH, "-O2", "-ffunction-sections", "-fdata-sections", "-ffp-contract=off",
              "-fno-unwind-tables", "-fno-asynchronous-unwind-tables", "-funsigned-char",
              "-fomit-frame-pointer")
#: Link only: newlib with semihosting (printf, exit through the debugger interface QEMU emulates).
MCU_LINK = ("--specs=rdimon.specs", "-Wl,--gc-sections")
TFLM_DEFINES = ("-DTF_LITE_STATIC_MEMORY", "-DTF_LITE_DISABLE_X86_NEON", "-DTF_LITE_MCU_DEBUG_LOG",
                "-DCMSIS_NN", "-DKERNELS_OPTIMIZED_FOR_SPEED", "-DARM_NN_ENABLE_F16=0",
                "-DARM_NN_ENABLE_F32=0")
CXX_FLAGS = ("-std=c++17", "-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics")
ARM_PACKAGES = "gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib qemu-system-arm"
#: The MPS2 board's CMSDK timer 0 runs at 25 MHz; with -icount shift=0 a guest instruction is 1 ns.
INSTRUCTIONS_PER_TICK = 40


def third_party_dir() -> Path:
    return Path(os.environ.get("EDGECNN_THIRD_PARTY", REPO.parent / "shared" / "third_party"))


def build_dir() -> Path:
    return Path(os.environ.get("EDGECNN_FIRMWARE_BUILD", REPO / "build" / "firmware"))


def missing_tools(*, mcu: bool) -> list[str]:
    """Tools (or third-party archives) this machine lacks for the host or the MCU build."""
    missing = [tool for tool in ("gcc",) if shutil.which(tool) is None]
    if mcu:
        missing += [tool for tool in ("arm-none-eabi-gcc", "arm-none-eabi-g++", "qemu-system-arm")
                    if shutil.which(tool) is None]
    archives = (CMSIS_DSP_ARCHIVE, TFLM_ARCHIVE) if mcu else (CMSIS_DSP_ARCHIVE,)
    missing += [str(third_party_dir() / a) for a in archives if not (third_party_dir() / a).is_file()]
    return missing


def _run(cmd: list[str], *, cwd: Path | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ConfigError(f"{Path(cmd[0]).name} failed ({proc.returncode}): {proc.stderr.strip()[-4000:]}")
    return proc.stdout


def _unpack(archive: str, stamp_name: str) -> Path:
    """Unpack a third-party archive once into the build folder; returns the folder it made."""
    source = third_party_dir() / archive
    if not source.is_file():
        raise ConfigError(f"{source} not found (set EDGECNN_THIRD_PARTY to the folder holding {archive})")
    target = build_dir() / stamp_name
    stamp = target / ".unpacked"
    if not stamp.exists():
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        with tarfile.open(source) as tar:
            tar.extractall(target, filter="data")
        stamp.touch()
    entries = [p for p in target.iterdir() if p.is_dir()]
    if len(entries) != 1:
        raise ConfigError(f"{source}: expected one top-level folder, found {[p.name for p in entries]}")
    return entries[0]


def cmsis_dsp_root() -> Path:
    return _unpack(CMSIS_DSP_ARCHIVE, "cmsisdsp")


def tflm_tree() -> Path:
    return _unpack(TFLM_ARCHIVE, "tflm-tree")


def _flags_key(*parts) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:12]


# Host ----------------------------------------------------------------------------------------------
def build_host_library(firmware_dir: Path, out: Path) -> Path:
    """``edgecnn_dsp.c`` (strict C99) and CMSIS-DSP's float FFT as one shared library for ctypes."""
    root = cmsis_dsp_root()
    out.parent.mkdir(parents=True, exist_ok=True)
    include = [f"-I{root / 'Include'}", f"-I{root / 'PrivateInclude'}", f"-I{firmware_dir}"]
    objects = []
    for rel in CMSIS_DSP_SOURCES:  # third-party code: compiled without -Werror
        obj = out.parent / (Path(rel).stem + ".o")
        _run(["gcc", *HOST_CFLAGS, *include, "-c", str(root / rel), "-o", str(obj)])
        objects.append(str(obj))
    dsp_obj = out.parent / "edgecnn_dsp.o"
    _run(["gcc", *HOST_CFLAGS, *STRICT, *include, "-c", str(firmware_dir / "edgecnn_dsp.c"), "-o", str(dsp_obj)])
    _run(["gcc", "-shared", "-o", str(out), str(dsp_obj), *objects, "-lm"])
    return out


def syntax_check(firmware_dir: Path) -> None:
    """``gcc -fsyntax-only -std=c99 -Wall -Wextra -Werror`` of the generated C (host headers)."""
    root = cmsis_dsp_root()
    include = [f"-I{root / 'Include'}", f"-I{root / 'PrivateInclude'}", f"-I{firmware_dir}"]
    for name in ("edgecnn_dsp.c", "edgecnn_config.h", "edgecnn_dsp.h"):
        _run(["gcc", "-fsyntax-only", "-std=c99", *DSP_DEFINES, *STRICT, *include, str(firmware_dir / name)])


# Cortex-M4 -----------------------------------------------------------------------------------------
def _tflm_includes(tree: Path) -> list[str]:
    return [f"-I{tree}", f"-I{tree / 'third_party/gemmlowp'}", f"-I{tree / 'third_party/flatbuffers/include'}",
            f"-I{tree / 'third_party/ruy'}", f"-I{tree / 'third_party/cmsis'}", f"-I{tree / 'third_party/cmsis_nn'}",
            f"-I{tree / 'third_party/cmsis/CMSIS/Core/Include'}", f"-I{tree / 'third_party/cmsis_nn/Include'}"]


def _compile(cmd: list[str]) -> None:
    """One compiler call whose last two arguments are ``-o OBJ``: written to a temporary name and
    renamed, so an interrupted build never leaves a truncated object behind."""
    obj = Path(cmd[-1])
    tmp = obj.with_name(obj.name + ".tmp")
    _run([*cmd[:-1], str(tmp)])
    tmp.replace(obj)


def _compile_all(jobs: list[list[str]]) -> None:
    workers = max(1, int(os.environ.get("JOBS", os.cpu_count() or 1)))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(_compile, cmd) for cmd in jobs]:
            future.result()


#: TFLM's portable kernels compiled: those of the operators ``export.firmware.RESOLVER_METHODS``
#: can register (and their shared code). The rest of the tree's ~100 kernels are never linked by a
#: generated resolver; leaving them out halves the build (the signal library's too).
TFLM_KERNELS = (
    "activations", "activations_common", "add_common", "concatenation", "conv_common", "decompress",
    "decompress_common", "depthwise_conv_common", "dequantize", "dequantize_common", "expand_dims",
    "fully_connected_common", "hard_swish", "hard_swish_common", "kernel_util", "logistic", "logistic_common",
    "micro_tensor_utils", "mul_common", "pad_common", "pooling_common", "quantize", "quantize_common", "reduce",
    "reduce_common", "reshape", "reshape_common", "softmax_common", "squeeze", "strided_slice",
    "strided_slice_common", "transpose_common",
)
#: CMSIS-NN kernel wrappers of operators no generated resolver registers.
TFLM_SKIP_CMSIS_NN = ("batch_matmul", "maximum_minimum", "svdf", "transpose_conv", "unidirectional_sequence_lstm")


def _tflm_sources(tree: Path) -> list[Path]:
    kernels = tree / "tensorflow/lite/micro/kernels"
    chosen = []
    for src in sorted(p for p in tree.rglob("*") if p.suffix in (".c", ".cc") and "signal" not in p.parts):
        if src.parent == kernels and src.stem not in TFLM_KERNELS:
            continue
        if src.parent == kernels / "cmsis_nn" and src.stem in TFLM_SKIP_CMSIS_NN:
            continue
        chosen.append(src)
    return chosen


def tflm_library() -> Path:
    """``libtflm.a`` for Cortex-M4 with CMSIS-NN kernels, built once (about 6 minutes on 2 cores)."""
    tree = tflm_tree()
    key = _flags_key(MCU_COMMON, TFLM_DEFINES, CXX_FLAGS)
    out = build_dir() / f"tflm-{key}"
    lib = out / f"libtflm-{_flags_key(TFLM_KERNELS, TFLM_SKIP_CMSIS_NN)}.a"
    if lib.exists():
        return lib
    obj_dir = out / "obj"
    obj_dir.mkdir(parents=True, exist_ok=True)
    include = _tflm_includes(tree)
    jobs = []
    objects = []
    for src in _tflm_sources(tree):
        obj = obj_dir / (str(src.relative_to(tree)).replace("/", "__") + ".o")
        objects.append(str(obj))
        if obj.exists():  # compiled by an earlier, interrupted build
            continue
        if src.suffix == ".cc":
            jobs.append(["arm-none-eabi-g++", *CXX_FLAGS, *MCU_COMMON, *TFLM_DEFINES, *include, "-c", str(src),
                         "-o", str(obj)])
        else:
            jobs.append(["arm-none-eabi-gcc", "-std=c17", *MCU_COMMON, *TFLM_DEFINES, *include, "-c", str(src),
                         "-o", str(obj)])
    _compile_all(jobs)
    partial = out / "libtflm.a.tmp"
    partial.unlink(missing_ok=True)
    _run(["arm-none-eabi-ar", "rcs", str(partial), *objects])
    partial.replace(lib)
    return lib


@dataclasses.dataclass(frozen=True)
class McuImage:
    elf: Path
    sections: dict[str, int]
    """Section sizes in bytes (.text, .rodata, .data, .bss, ...) from ``arm-none-eabi-size -A``."""


def build_mcu_image(firmware_dir: Path, app_sources: list[Path], out_dir: Path, *, defines: tuple[str, ...] = (),
                    name: str = "app") -> McuImage:
    """Link the generated library, TFLM, CMSIS-DSP and ``app_sources`` into a semihosting ELF for
    the MPS2 AN386 board (vector table at 0, from ``edgecnn_vectors.c`` of the generated folder)."""
    tree, dsp_root, lib = tflm_tree(), cmsis_dsp_root(), tflm_library()
    out_dir.mkdir(parents=True, exist_ok=True)
    include = [*_tflm_includes(tree), f"-I{dsp_root / 'Include'}", f"-I{dsp_root / 'PrivateInclude'}",
               f"-I{firmware_dir}"]
    dsp_key = _flags_key(MCU_COMMON, DSP_DEFINES)
    dsp_obj_dir = build_dir() / f"cmsisdsp-m4-{dsp_key}"
    dsp_obj_dir.mkdir(parents=True, exist_ok=True)
    jobs, objects = [], []
    for rel in CMSIS_DSP_SOURCES:
        obj = dsp_obj_dir / (Path(rel).stem + ".o")
        objects.append(str(obj))
        if not obj.exists():
            jobs.append(["arm-none-eabi-gcc", "-std=c99", *MCU_COMMON, *DSP_DEFINES, *include, "-c",
                         str(dsp_root / rel), "-o", str(obj)])
    for src in [firmware_dir / "edgecnn_dsp.c", firmware_dir / "edgecnn_vectors.c",
                *[p for p in app_sources if p.suffix == ".c"]]:
        obj = out_dir / (src.stem + ".o")
        objects.append(str(obj))
        jobs.append(["arm-none-eabi-gcc", "-std=c99", *STRICT, *MCU_COMMON, *DSP_DEFINES, *defines, *include, "-c",
                     str(src), "-o", str(obj)])
    for src in [firmware_dir / "edgecnn_model.cc", firmware_dir / "edgecnn_model_data.cc",
                *[p for p in app_sources if p.suffix == ".cc"]]:
        obj = out_dir / (src.stem + ".o")
        objects.append(str(obj))
        jobs.append(["arm-none-eabi-g++", *CXX_FLAGS, *MCU_COMMON, *TFLM_DEFINES, *DSP_DEFINES, *defines, *include,
                     "-c", str(src), "-o", str(obj)])
    _compile_all(jobs)
    elf = out_dir / name
    _run(["arm-none-eabi-g++", *MCU_COMMON, *MCU_LINK, *objects, str(lib),
          "-Wl,--section-start=.vectors=0x0", "-Wl,-u,edgecnn_vectors", "-lm", "-o", str(elf)])
    return McuImage(elf=elf, sections=section_sizes(elf))


def section_sizes(elf: Path) -> dict[str, int]:
    text = _run(["arm-none-eabi-size", "-A", str(elf)])
    sizes = {}
    for line in text.splitlines():
        match = re.match(r"^(\.\S+)\s+(\d+)\s+\d+", line)
        if match:
            sizes[match.group(1)] = int(match.group(2))
    return sizes


def symbol_sizes(elf: Path) -> dict[str, int]:
    """Object sizes by (demangled) symbol name (``arm-none-eabi-nm -S -C``)."""
    sizes = {}
    for line in _run(["arm-none-eabi-nm", "-S", "-C", "--size-sort", str(elf)]).splitlines():
        parts = line.split(maxsplit=3)
        if len(parts) == 4:
            sizes[parts[3]] = int(parts[1], 16)
    return sizes


def run_qemu(elf: Path, args: list[str] = (), *, timeout: float = 900) -> str:
    """Run a semihosting ELF on the MPS2 AN386 board with instruction counting; returns its stdout.

    ``args`` become the program's argv[1:] (semihosting command line; the guest opens host files
    through semihosting too). A non-zero exit (a mismatch the program found, a fault) raises
    ConfigError with the end of the log."""
    config = ",".join(["enable=on", "target=native", f"arg={elf.name}", *(f"arg={a}" for a in args)])
    cmd = ["qemu-system-arm", "-M", "mps2-an386", "-display", "none", "-monitor", "none", "-serial", "none",
           "-icount", "shift=0", "-semihosting-config", config, "-kernel", str(elf)]
    if any("," in a for a in args):
        raise ConfigError(f"qemu semihosting arguments cannot hold commas: {args}")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ConfigError(f"qemu-system-arm did not finish {elf.name} within {timeout:.0f} s") from None
    if proc.returncode != 0:
        raise ConfigError(f"{elf.name} on qemu exited {proc.returncode}: {(proc.stdout + proc.stderr)[-3000:]}")
    return proc.stdout
