"""The pickle corpus: plain reference-format pickles that must load, crafted ones that must be refused.

``python tests/pickle_corpus/build.py`` (re)writes ``tests/pickle_corpus/*.pkl`` and ``expected.json``
(name -> outcome, the message a refusal must match, what the file tries). The files are committed;
``tests/test_pickle_corpus.py`` checks that this script still writes exactly them, then runs each one
through the CLI in its own process (and the plain ones in the numpy 1.26 device environment too).

Crafted files are written by Python's own pickler (the pure-Python one, so the bytes are the same on
every run) with two additions: :class:`Global` names any module attribute without importing it, and
numpy's reconstruction callables are spelt with the module path asked for (``numpy.core`` as numpy 1.x
writes, ``numpy._core`` as numpy 2.x writes), so both kinds of file come from one environment.
"""

from __future__ import annotations

import collections
import io
import json
import pickle
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
EXPECTED_FILE = "expected.json"
MARKER = "PWNED"
"""A crafted payload that ran would create this file in the current folder (tests look for it)."""


class Global:
    """A module attribute the pickle names (GLOBAL / STACK_GLOBAL), never imported here."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args):  # the pickler wants REDUCE's callable to look callable
        raise TypeError("a Global only names a callable")


class Call:
    """``func(*args)`` in the pickle (REDUCE), then BUILD with each of ``states`` in turn."""

    def __init__(self, func: Global, args: tuple, *states) -> None:
        self.func, self.args, self.states = func, args, states

    def __reduce__(self):
        return (self.func, self.args, self.states[0]) if len(self.states) == 1 else (self.func, self.args)

    def __call__(self, *args):
        raise TypeError("a Call only describes a call")


class Raw:
    """Opcodes written verbatim (for what no object graph produces)."""

    def __init__(self, data: bytes) -> None:
        self.data = data


def numpy_globals(core: str) -> dict[object, tuple[str, str]]:
    from numpy._core import multiarray, numeric

    return {np.ndarray: ("numpy", "ndarray"), np.dtype: ("numpy", "dtype"),
            multiarray._reconstruct: (f"{core}.multiarray", "_reconstruct"),
            multiarray.scalar: (f"{core}.multiarray", "scalar"),
            numeric._frombuffer: (f"{core}.numeric", "_frombuffer")}


class CorpusPickler(pickle._Pickler):
    """The pure-Python pickler, spelling numpy's globals as numpy ``core`` ("numpy.core" or
    "numpy._core") would and writing :class:`Global`, :class:`Call` and :class:`Raw` objects."""

    def __init__(self, file, protocol: int, core: str = "numpy._core") -> None:
        super().__init__(file, protocol=protocol)
        self.names = numpy_globals(core)

    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, Global):
            self.framer.commit_frame()
            self.write_global(obj.module, obj.name)
            return
        if isinstance(obj, Raw):
            self.framer.commit_frame()
            self.write(obj.data)
            return
        if isinstance(obj, Call) and len(obj.states) > 1:
            self.framer.commit_frame()
            self.save(obj.func)
            self.save(obj.args)
            self.write(pickle.REDUCE)
            for state in obj.states:
                self.save(state)
                self.write(pickle.BUILD)
            return
        super().save(obj, save_persistent_id)

    def save_global(self, obj, name=None):
        if isinstance(obj, Global):
            return self.write_global(obj.module, obj.name)
        try:
            known = self.names.get(obj)
        except TypeError:  # unhashable
            known = None
        if known is None:
            return super().save_global(obj, name)
        self.write_global(*known)
        self.memoize(obj)

    def write_global(self, module: str, name: str) -> None:
        if self.proto >= 4:
            self.save(module)
            self.save(name)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + module.encode() + b"\n" + name.encode() + b"\n")


def dumps(obj, protocol: int = 4, core: str = "numpy._core") -> bytes:
    buffer = io.BytesIO()
    CorpusPickler(buffer, protocol, core).dump(obj)
    return buffer.getvalue()


# --- the pieces numpy writes, by hand -------------------------------------------------------------------
def dtype(spec: str, state=None) -> Call:
    """``numpy.dtype(typestr, False, True)`` + BUILD as numpy writes ``spec``, with another ``state`` if given."""
    _, args, own_state = np.dtype(spec).__reduce__()
    return Call(Global("numpy", "dtype"), args, own_state if state is None else state)


def reconstruct(dt, shape, raw, *, fortran=False, version=1, core="numpy._core", subtype=None, extra_states=()):
    """An array as ``ndarray.__reduce__`` spells it: _reconstruct(ndarray, (0,), b'b') + BUILD state."""
    state = (version, shape, dt, fortran, raw) if version is not None else (shape, dt, fortran, raw)
    return Call(Global(f"{core}.multiarray", "_reconstruct"),
                (subtype or Global("numpy", "ndarray"), (0,), b"b"), state, *extra_states)


def frombuffer(raw, dt, shape, order="C", *more, core="numpy._core") -> Call:
    """An array as protocol 5 spells it: _frombuffer(buffer, dtype, shape, order[, axis_order])."""
    return Call(Global(f"{core}.numeric", "_frombuffer"), (raw, dt, shape, order, *more))


def reduce_to(module: str, name: str, *args) -> Call:
    return Call(Global(module, name), args)


# --- plain reference-format data --------------------------------------------------------------------------
def reference_data(variant: str = "plain") -> dict:
    """A small data set in the reference format (dict of time, signal, label), exactly reproducible."""
    rows, length, fs = 4, 32, 12800.0
    t = np.arange(length) / fs
    signal = np.sin(2 * np.pi * 1000.0 * t)[None, :] * np.arange(1, rows + 1)[:, None]
    data = {"time": np.tile(t, (rows, 1)), "signal": signal, "label": np.eye(2)[[0, 1, 0, 1]]}
    if variant == "extras":  # every optional key, numpy scalars, text arrays, odd layouts
        data.update({"signal": np.asfortranarray(signal.astype(">f4")), "fs": np.float64(fs),
                     "recording": np.array([7, 7, 9, 9], dtype=np.int64), "classes": np.array(["healthy", "fault"]),
                     "label": np.eye(2, dtype=bool)[[0, 0, 1, 1]], "note": np.str_("é"), "ok": np.bool_(True)})
        data.pop("time")
    elif variant == "transposed":  # Fortran order, and a 3-D permutation that protocol 5 writes with 'K'
        data["signal"] = np.asfortranarray(signal)
        data["cube"] = np.arange(24.0).reshape(2, 3, 4).transpose(1, 0, 2)
    elif variant == "ordered":
        data = collections.OrderedDict(data)
    return data


def _valid() -> dict[str, tuple[str, bytes]]:
    out = {}
    for core, tag in (("numpy.core", "np1"), ("numpy._core", "np2")):
        for protocol in range(6):
            out[f"plain_p{protocol}_{tag}"] = (f"reference format, protocol {protocol}, {core} paths",
                                               dumps(reference_data(), protocol, core))
        out[f"extras_p2_{tag}"] = ("optional keys, numpy scalars, text arrays, big-endian Fortran signal, protocol 2",
                                   dumps(reference_data("extras"), 2, core))
        out[f"extras_p5_{tag}"] = ("the same with protocol 5", dumps(reference_data("extras"), 5, core))
    out["transposed_p5"] = ("non-contiguous arrays (protocol 5 'K' order with axis_order)",
                            dumps(reference_data("transposed"), 5))
    out["ordereddict_p2"] = ("an OrderedDict at the top (read as a dict)", dumps(reference_data("ordered"), 2))
    return out


#: Valid file name -> the data it holds (the test compares what loads with this).
VALID_DATA = {"plain": reference_data(), "extras": reference_data("extras"),
              "transposed": reference_data("transposed"), "ordereddict": reference_data("ordered")}

# --- crafted: (description, payload, message the refusal must match) ----------------------------------------
F8 = dtype("f8")
OBJ = dtype("O8")


def _ref(signal) -> dict:
    """A reference-format dict around a crafted ``signal``."""
    return {"signal": signal, "label": np.eye(2)[[0, 1]]}


def _deep(levels: int):
    value: list = []
    for _ in range(levels):
        value = [value]
    return value


def _crafted() -> dict[str, tuple[str, bytes, str]]:
    shared = b"\0" * 4096
    cases: dict[str, tuple[str, object, str, int]] = {
        # object and void dtypes: numpy would read addresses from the pickle's bytes
        "object_array": ("object array from raw bytes (the pointers are the attacker's)",
                         _ref(reconstruct(OBJ, (2,), b"\x41" * 16)), r"dtype 'O8' is refused", 4),
        "object_array_np1": ("the same with numpy 1.x paths",
                             _ref(reconstruct(dtype("O8"), (2,), b"\x41" * 16,
                                              core="numpy.core")), r"dtype 'O8' is refused", 2),
        "object_array_protocol5": ("object array through _frombuffer", _ref(frombuffer(b"\x41" * 16, OBJ, (2,))),
                                   r"dtype 'O8' is refused", 5),
        "object_scalar": ("numpy scalar of object dtype", _ref(Call(Global("numpy._core.multiarray", "scalar"),
                                                                   (OBJ, b"\x41" * 8))),
                          r"dtype 'O8' is refused", 4),
        "void_object_field": ("void dtype given an object field through BUILD",
                              _ref(reconstruct(dtype("V16", (3, "|", None, ("a", "b"), {
                                  "a": (OBJ, 0), "b": (OBJ, 8)}, 16, 1, 63)), (1,), b"\x41" * 16)),
                              r"dtype 'V16' is refused", 4),
        "float_dtype_with_fields": ("a float typestr whose BUILD state adds object fields",
                                    _ref(reconstruct(dtype("f8", (3, "|", None, ("a",), {"a": (OBJ, 0)}, 8, 1, 63)),
                                                     (2,), b"\0" * 16)),
                                    r"declares fields or a sub-array", 4),
        "float_dtype_with_subarray": ("a float typestr whose BUILD state adds an object sub-array",
                                      _ref(reconstruct(dtype("f8", (3, "|", (OBJ, (2,)), None, None, 16, 8, 63)),
                                                       (2,), b"\0" * 32)),
                                      r"declares fields or a sub-array", 4),
        "structured_dtype_list": ("numpy.dtype called with a field list",
                                  _ref(reconstruct(Call(Global("numpy", "dtype"), ([("a", "O")], False, True),
                                                        (3, "|", None, None, None, -1, -1, 0)), (1,), b"\0" * 8)),
                                  r"expected \(typestr, align, copy\)", 4),
        "datetime_dtype": ("datetime64 (version-4 dtype state with metadata)",
                           _ref(reconstruct(dtype("M8[s]"), (2,), b"\0" * 16)), r"dtype 'M8' is refused", 4),
        "long_double": ("float128 (platform-dependent layout)", _ref(reconstruct(dtype("f16", (
            3, "<", None, None, None, -1, -1, 0)), (1,), b"\0" * 16)), r"'f' comes in sizes", 4),
        "native_byte_order": ("dtype with '=' (no explicit byte order)",
                              _ref(reconstruct(dtype("f8", (3, "=", None, None, None, -1, -1, 0)), (2,), b"\0" * 16)),
                              r"byte order '='", 4),
        "dtype_without_state": ("numpy.dtype('f8') never given its byte order",
                                _ref(reconstruct(Call(Global("numpy", "dtype"), ("f8", False, True)), (2,),
                                                 b"\0" * 16)), r"has no state", 4),
        "dtype_state_twice": ("BUILD twice on a dtype: a harmless state, then an object field",
                              _ref(reconstruct(Call(Global("numpy", "dtype"), ("f8", False, True),
                                                    (3, "<", None, None, None, -1, -1, 0),
                                                    (3, "|", None, ("a",), {"a": (OBJ, 0)}, 8, 1, 63)),
                                               (2,), b"\0" * 16)), r"state is set twice", 4),
        "array_state_twice": ("BUILD twice on an array: float data, then object data",
                              _ref(reconstruct(F8, (2,), b"\0" * 16, extra_states=((1, (2,), OBJ, False,
                                                                                   b"\x41" * 16),))),
                              r"state is set twice", 4),
        "build_on_stand_in": ("BUILD straight on the numpy.dtype global",
                              _ref(Raw(b"cnumpy\ndtype\n}(X\x08\x00\x00\x00__code__K\x01ub")),
                              r"BUILD on numpy.dtype itself", 2),
        "array_without_state": ("_reconstruct with no BUILD",
                                _ref(Call(Global("numpy._core.multiarray", "_reconstruct"),
                                          (Global("numpy", "ndarray"), (0,), b"b"))),
                                r"an array without its state", 4),
        "array_subtype_dtype": ("_reconstruct of a subtype that is not ndarray",
                                _ref(reconstruct(F8, (2,), b"\0" * 16, subtype=Global("numpy", "dtype"))),
                                r"only plain numpy.ndarray", 4),
        "masked_array": ("_reconstruct of a masked array class", _ref(reconstruct(
            F8, (2,), b"\0" * 16, subtype=Global("numpy.ma.core", "MaskedArray"))),
            r"refused to load numpy.ma.core.MaskedArray", 4),
        "ndarray_called": ("numpy.ndarray(shape, dtype, buffer) called directly",
                           _ref(reduce_to("numpy", "ndarray", (2,), OBJ, b"\x41" * 16)),
                           r"numpy.ndarray\(\) with .* where data was expected", 4),
        "object_data_list": ("array state whose data is a list (numpy's object-array format)",
                             _ref(reconstruct(F8, (2,), [1.0, 2.0])), r"array data is a list", 4),
        "fortran_flag_not_bool": ("Fortran flag 1 instead of True", _ref(reconstruct(F8, (2,), b"\0" * 16, fortran=1)),
                                  r"Fortran flag is 1", 4),
        "array_state_version": ("array state version 2", _ref(reconstruct(F8, (2,), b"\0" * 16, version=2)),
                                r"array state version 2 is unknown", 4),
        # REDUCE to callables that run code
        "os_system": ("os.system('touch PWNED')", _ref(reduce_to("posix", "system", f"touch {MARKER}")),
                      r"refused to load posix.system", 4),
        "os_system_protocol0": ("the same, protocol 0", _ref(reduce_to("os", "system", f"touch {MARKER}")),
                                r"refused to load os.system", 0),
        "builtins_eval": ("eval(\"open('PWNED', 'w')\")", _ref(reduce_to("builtins", "eval", f"open('{MARKER}', 'w')")),
                          r"refused to load builtins.eval", 4),
        "builtins_exec_py2": ("__builtin__.exec in a protocol-2 pickle",
                              _ref(reduce_to("__builtin__", "exec", f"open('{MARKER}', 'w')")),
                              r"refused to load __builtin__.exec", 2),
        "subprocess_call": ("subprocess.check_call(['touch', 'PWNED'])",
                            _ref(reduce_to("subprocess", "check_call", ["touch", MARKER])),
                            r"refused to load subprocess.check_call", 4),
        "getattr_import": ("getattr(__import__('os'), 'system')('touch PWNED')",
                           _ref(Call(Call(Global("builtins", "getattr"),
                                          (reduce_to("builtins", "__import__", "os"), "system")),
                                     (f"touch {MARKER}",))),
                           r"refused to load builtins.getattr", 4),
        "numpy_runstring": ("numpy.testing's runstring (exec)",
                            _ref(reduce_to("numpy.testing._private.utils", "runstring", f"open('{MARKER}', 'w')", {})),
                            r"refused to load numpy.testing._private.utils.runstring", 4),
        "numpy_load_pickle": ("numpy.load with allow_pickle", _ref(reduce_to("numpy", "load", "x.npy", None, True)),
                              r"refused to load numpy.load", 4),
        "nested_pickle": ("pickle.loads of an inner payload", _ref(reduce_to("pickle", "loads", b"cposix\nsystem\n.")),
                          r"refused to load pickle.loads", 4),
        "copyreg_reconstructor": ("copyreg._reconstructor (object creation)",
                                  _ref(reduce_to("copyreg", "_reconstructor", Global("builtins", "object"),
                                                 Global("builtins", "object"), None)),
                                  r"refused to load copyreg._reconstructor", 2),
        "codecs_other_encoding": ("_codecs.encode with another codec",
                                  _ref(reduce_to("_codecs", "encode", "x", "rot13")),
                                  r"only use it as encode\(text, 'latin1'\)", 2),
        # nested tricks
        "array_as_dtype": ("an array where the dtype belongs",
                           _ref(reconstruct(reconstruct(F8, (1,), b"\0" * 8), (2,), b"\0" * 16)),
                           r"is not a numpy.dtype\(\.\.\.\) call", 4),
        "array_in_shape": ("an array inside the shape",
                           _ref(reconstruct(F8, (reconstruct(F8, (1,), b"\0" * 8),), b"\0" * 16)),
                           r"array shape .* is not a tuple", 4),
        "array_as_dict_key": ("an array record as a dict key",
                              Raw(b"\x80\x02}" + dumps(reconstruct(F8, (1,), b"\0" * 8), 2)[2:-1] + b"K\x01s."),
                              r"a numpy array \(.*\) used as a dict key", 4),
        "bare_global": ("a bare reference to numpy.dtype as a value", _ref(Global("numpy", "dtype")),
                        r"a bare reference to numpy.dtype", 4),
        "deep_nesting": ("lists nested 200 deep", _ref(_deep(200)), r"nested deeper than 64 levels", 4),
        "text_code_point": ("a U1 array holding code point 0x110000",
                            _ref(reconstruct(dtype("<U1"), (1,), b"\x00\x00\x11\x00")),
                            r"code point beyond U\+10FFFF", 4),
        # sizes
        "huge_shape": ("declared shape (10**12,) with 8 bytes", _ref(frombuffer(b"\0" * 8, F8, (10**12,))),
                       r"needs 8000000000000 bytes, the pickle holds 8", 5),
        "huge_shape_overflow": ("shape (2**62, 2**62)", _ref(reconstruct(F8, (2**62, 2**62), b"\0" * 8)),
                                r"needs \d+ bytes, the pickle holds 8", 4),
        "negative_shape": ("shape (-1,)", _ref(reconstruct(F8, (-1,), b"\0" * 8)), r"array shape \(-1,\)", 4),
        "bool_shape": ("shape (True,)", _ref(reconstruct(F8, (True,), b"\0" * 8)), r"array shape \(True,\)", 4),
        "too_many_dims": ("33 dimensions", _ref(reconstruct(F8, (1,) * 33, b"\0" * 8)), r"at most 32 integers", 4),
        "byte_count_mismatch": ("2 float64 declared, 12 bytes given", _ref(reconstruct(F8, (2,), b"\0" * 12)),
                                r"needs 16 bytes, the pickle holds 12", 4),
        "memo_amplification": ("one 4 KiB buffer referenced by 2000 arrays (8 MiB once copied)",
                               _ref([frombuffer(shared, F8, (512,)) for _ in range(2000)]),
                               r"data repeated by reference", 5),
        # malformed streams
        "truncated_half": ("a valid pickle cut in half", Raw(dumps(reference_data(), 4)[:600]),
                           r"pickle data was truncated", 4),
        "truncated_after_proto": ("only the protocol header", Raw(b"\x80\x04"), r"pickle data was truncated", 4),
        "truncated_bytes_length": ("BINBYTES8 declaring 2**60 bytes",
                                   Raw(b"\x80\x04\x8e" + (2**60).to_bytes(8, "little")),
                                   r"a length field asks for more memory|pickle data was truncated", 4),
        "not_a_pickle": ("text, not a pickle", Raw(b"time,signal\n0,1\n"), r"could not find MARK", 4),
        "protocol_6": ("an unknown protocol", Raw(b"\x80\x06N."), r"unsupported pickle protocol: 6", 4),
        "persistent_id": ("a persistent id", Raw(b"\x80\x04K\x01Q."), r"persistent ids are not data", 4),
        "out_of_band_buffer": ("an out-of-band buffer", Raw(b"\x80\x05\x97."), r"out-of-band", 5),
        "extension_code": ("a copyreg extension code", Raw(b"\x80\x02\x82\x01."), r"unregistered extension code", 2),
        "newobj_on_stand_in": ("NEWOBJ with a stand-in as the class",
                               Raw(b"\x80\x04\x8c\x05numpy\x8c\x05dtype\x93)\x81."),
                               r"NEWOBJ class argument", 4),
    }
    out = {}
    for name, (about, obj, message, protocol) in cases.items():
        payload = obj.data if isinstance(obj, Raw) else dumps(obj, protocol)
        out[name] = (about, payload, message)
    return out


def build() -> dict[str, bytes]:
    """Every corpus file name -> its bytes, and ``expected.json``."""
    files: dict[str, bytes] = {}
    expected: dict[str, dict] = {}
    for name, (about, payload) in _valid().items():
        files[f"{name}.pkl"] = payload
        expected[name] = {"outcome": "loads", "data": name.split("_")[0], "about": about}
    for name, (about, payload, message) in _crafted().items():
        files[f"{name}.pkl"] = payload
        expected[name] = {"outcome": "refused", "message": message, "about": about}
    files[EXPECTED_FILE] = (json.dumps(expected, indent=2, sort_keys=True) + "\n").encode()
    return files


def main() -> int:
    files = build()
    for old in HERE.glob("*.pkl"):
        if old.name not in files:
            old.unlink()
    for name, data in files.items():
        (HERE / name).write_bytes(data)
    print(f"wrote {len(files) - 1} pickles and {EXPECTED_FILE} to {HERE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
