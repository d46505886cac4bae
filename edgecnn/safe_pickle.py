"""Data pickles without code: arrays rebuilt from validated (dtype, shape, bytes), nothing else called.

A pickle is a small program: it names callables (``GLOBAL``) and calls them with arguments it chooses
(``REDUCE``, ``BUILD``). Admitting ``numpy.ndarray`` and ``numpy.dtype`` is not safe: numpy will build
an object array whose "objects" are addresses taken from the pickle's bytes, or a void dtype with an
object field set through ``__setstate__``, and dereference them (a segfault at best).

So this unpickler hands numpy nothing. The few globals a data pickle needs resolve to *inert
stand-ins* that only record how they were called (and what ``BUILD`` passed afterwards):

- numpy's reconstruction callables under both module paths, ``numpy.core`` (numpy 1.x) and
  ``numpy._core`` (numpy 2.x): ``multiarray._reconstruct``, ``multiarray.scalar``,
  ``numeric._frombuffer`` (protocol 5), and ``numpy.ndarray``, ``numpy.dtype``;
- ``_codecs.encode(text, "latin1")`` and ``bytes()``, which protocols 0-2 use to spell bytes
  (computed here: they are pure), and ``collections.OrderedDict`` (read as a plain ``dict``).

Every other global is refused by name. Once the stream is parsed, :func:`materialise` walks the
result: plain containers and scalars stay, each recorded array or scalar is validated (dtype
kind bool, signed/unsigned int, float, complex, or fixed-width text ``U``/``S``, with an explicit
byte order and no fields, sub-arrays or metadata; a shape of non-negative ints; a byte count equal
to the shape's; all arrays together no larger than the file) and only then built with
``np.frombuffer(...).reshape(...)`` (a copy, or protocol 5's private buffer adopted). numpy is never
imported through the pickle's module names, so a numpy 2 pickle reads under numpy 1.26 and the reverse.

numpy and the standard library only (the device side replays pickles through this module).
"""

from __future__ import annotations

import io
import pickle
import re
import reprlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

#: Deepest nesting of containers a data pickle may have.
MAX_DEPTH = 64
#: Most dimensions an array may declare (numpy 1.x's limit).
MAX_DIMS = 32
#: Numeric dtype kinds and their allowed item sizes; ``U`` (UCS4 text) and ``S`` (bytes) take any count.
NUMERIC_SIZES = {"b": (1,), "i": (1, 2, 4, 8), "u": (1, 2, 4, 8), "f": (2, 4, 8), "c": (8, 16)}
_TYPESTR = re.compile(r"^([biufcUS])(\d{1,9})$")
_ALLOWED_KINDS = "bool, int, uint, float (16-64 bit), complex (64/128 bit), fixed-width text (U, S)"


class PickleRefused(Exception):
    """The pickle is not plain data (or not well-formed data); the message says what and why."""


class _Record:
    """What a numpy stand-in was called with, and the state ``BUILD`` gave it: inert data."""

    __slots__ = ("what", "args", "state", "has_state")

    def __init__(self, what: str, args: tuple) -> None:
        self.what, self.args, self.state, self.has_state = what, args, None, False

    def __setstate__(self, state: Any) -> None:
        if self.has_state:
            raise PickleRefused(f"{self.what}: its state is set twice")
        self.state, self.has_state = state, True

    def __repr__(self) -> str:
        return f"{self.what}{_short(self.args)}"


class _StandIn:
    """A global the pickle may name; calling it records the call (or computes a pure value)."""

    __slots__ = ("name", "call")

    def __init__(self, name: str, call: Callable[[str, tuple], Any]) -> None:
        self.name, self.call = name, call

    def __call__(self, *args: Any) -> Any:
        return self.call(self.name, args)

    def __setstate__(self, state: Any) -> None:
        raise PickleRefused(f"BUILD on {self.name} itself (not on a value it made)")

    def __repr__(self) -> str:
        return self.name


def _record(what: str) -> Callable[[str, tuple], _Record]:
    return lambda name, args: _Record(what, args)


def _codecs_encode(name: str, args: tuple) -> bytes:
    # Protocols 0-2 spell a bytes object as _codecs.encode(its latin-1 text, "latin1").
    if len(args) != 2 or not isinstance(args[0], str) or args[1] not in ("latin1", "latin-1"):
        raise PickleRefused(f"{name} called with {_short(args)}; data pickles only use it as "
                            f"encode(text, 'latin1')")
    return args[0].encode("latin-1")


def _empty_bytes(name: str, args: tuple) -> bytes:
    # Protocols 0-2 spell an empty bytes object as bytes().
    if args:
        raise PickleRefused(f"{name} called with {_short(args)}; data pickles only use bytes()")
    return b""


def _plain_dict(name: str, args: tuple) -> dict:
    if not args:
        return {}
    if len(args) != 1 or not isinstance(args[0], (list, tuple)) or not all(
            isinstance(p, (list, tuple)) and len(p) == 2 for p in args[0]):
        raise PickleRefused(f"{name} called with {_short(args)}; expected a list of (key, value) pairs")
    return {_check_key(k): v for k, v in args[0]}


_ARRAY = _record("array")
_STAND_INS: dict[tuple[str, str], Callable[[str, tuple], Any]] = {
    ("numpy", "ndarray"): _record("numpy.ndarray()"),
    ("numpy", "dtype"): _record("dtype"),
    ("_codecs", "encode"): _codecs_encode,
    ("__builtin__", "bytes"): _empty_bytes, ("builtins", "bytes"): _empty_bytes,
    ("collections", "OrderedDict"): _plain_dict,
}
for _core in ("numpy.core", "numpy._core"):
    _STAND_INS[(f"{_core}.multiarray", "_reconstruct")] = _ARRAY
    _STAND_INS[(f"{_core}.multiarray", "scalar")] = _record("scalar")
    _STAND_INS[(f"{_core}.numeric", "_frombuffer")] = _record("frombuffer")


class _DataUnpickler(pickle.Unpickler):
    """Resolves only the stand-ins above; refuses every other global and persistent ids."""

    def __init__(self, file: io.BufferedIOBase) -> None:
        # latin1: a Python 2 pickle's str holding array bytes decodes byte for byte (numpy's advice).
        super().__init__(file, encoding="latin1")
        self.stand_ins: dict[tuple[str, str], _StandIn] = {}

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if key not in _STAND_INS:
            raise PickleRefused(f"refused to load {module}.{name}: only numpy arrays and plain "
                                f"containers are allowed in a data pickle")
        if key not in self.stand_ins:
            self.stand_ins[key] = _StandIn(f"{module}.{name}", _STAND_INS[key])
        return self.stand_ins[key]

    def persistent_load(self, pid: Any) -> Any:
        raise PickleRefused("persistent ids are not data")


def load(path: str | Path) -> Any:
    """Parse a data pickle and build its arrays; ``PickleRefused`` (or the parser's own exception
    for a malformed stream) otherwise. Callers turn both into one-line input errors."""
    path = Path(path)
    with open(path, "rb") as fh:
        return _load(fh, Path(path).stat().st_size)


def loads(data: bytes) -> Any:
    """:func:`load` for bytes in memory."""
    return _load(io.BytesIO(data), len(data))


def _load(stream: io.BufferedIOBase, size: int) -> Any:
    try:
        parsed = _DataUnpickler(stream).load()
    except EOFError:
        raise PickleRefused("pickle data was truncated (ran out of input)") from None
    except MemoryError:
        raise PickleRefused("a length field asks for more memory than there is (a corrupt or hostile "
                            "file)") from None
    return materialise(parsed, byte_budget=size)


# --- after parsing: validate, then build -------------------------------------------------------------
_SCALARS = (str, bytes, bytearray, int, float, bool, complex, type(None))


def materialise(obj: Any, *, byte_budget: int) -> Any:
    """The parsed object with every recorded array or numpy scalar validated and built.

    ``byte_budget``: the most bytes all arrays together may hold (the file's size: data that is
    referenced many times from the pickle's memo would otherwise multiply when copied).
    """
    return _Materialiser(byte_budget).convert(obj, 0)


class _Materialiser:
    def __init__(self, byte_budget: int) -> None:
        self.budget = byte_budget
        self.used = 0
        self.memo: dict[int, Any] = {}  # id(parsed object) -> converted (shared references stay shared)
        self.adopted: set[int] = set()  # ids of bytearrays arrays were built on without a copy

    def convert(self, obj: Any, depth: int) -> Any:
        kind = type(obj)
        if kind in _SCALARS:
            return obj
        if depth > MAX_DEPTH:
            raise PickleRefused(f"containers nested deeper than {MAX_DEPTH} levels")
        if id(obj) in self.memo:
            return self.memo[id(obj)]
        if kind is _Record:
            out = self.array_or_scalar(obj)
            obj.args, obj.state = (), None  # the raw bytes go as soon as their copy exists
        elif kind is list:
            self.memo[id(obj)] = obj  # before the items: a list may contain itself
            obj[:] = [self.convert(item, depth + 1) for item in obj]
            out = obj
        elif kind is dict:
            self.memo[id(obj)] = obj
            for key in list(obj):
                obj[_check_key(key)] = self.convert(obj[key], depth + 1)
            out = obj
        elif kind is tuple:
            out = tuple(self.convert(item, depth + 1) for item in obj)
        elif kind in (set, frozenset):
            out = kind(_check_key(item) for item in obj)
        elif kind is _StandIn:
            raise PickleRefused(f"a bare reference to {obj.name} where data was expected")
        else:
            raise PickleRefused(f"{_kind(obj)} is not data")
        self.memo[id(obj)] = out
        return out

    def array_or_scalar(self, rec: _Record) -> Any:
        if rec.what == "array":
            dtype, shape, order, raw = _reconstruct_parts(rec)
            array = self.build(dtype, shape, raw, order)
        elif rec.what == "frombuffer":
            dtype, shape, order, raw, axes = _frombuffer_parts(rec)
            array = self.build(dtype, shape, raw, order, axes)
        elif rec.what == "dtype":
            return _dtype(rec)
        elif rec.what == "scalar":
            if rec.has_state or len(rec.args) != 2:
                raise PickleRefused(f"numpy scalar with arguments {_short(rec.args)}; expected (dtype, bytes)")
            dtype, raw = _dtype(rec.args[0]), _raw(rec.args[1], "numpy scalar")
            return self.build(dtype, (), raw, "C")[()]
        else:
            raise PickleRefused(f"{rec.what} with {_short(rec.args)} where data was expected "
                                f"(numpy pickles arrays through _reconstruct or _frombuffer)")
        return array

    def build(self, dtype: np.dtype, shape: tuple[int, ...], raw: bytes | bytearray, order: str,
              axes: tuple[int, ...] | None = None) -> np.ndarray:
        count = 1
        for dim in shape:
            count *= dim
        expected = count * dtype.itemsize
        if expected != len(raw):
            raise PickleRefused(f"array of shape {shape} and dtype {dtype.str} needs {expected} bytes, "
                                f"the pickle holds {len(raw)}")
        self.used += expected
        if self.used > self.budget:
            raise PickleRefused(f"its arrays hold {self.used} bytes, more than the file's {self.budget}: "
                                f"data repeated by reference")
        if dtype.kind == "U" and count and int(np.frombuffer(raw, dtype=dtype.byteorder + "u4").max()) > 0x10FFFF:
            raise PickleRefused(f"text array of dtype {dtype.str} holds a code point beyond U+10FFFF")
        flat = np.frombuffer(raw, dtype=dtype, count=count) if count else np.zeros(0, dtype)
        if axes is not None:
            array = flat.reshape(shape, order="C").transpose(axes)
        else:
            array = flat.reshape(shape, order=order)
        # A bytearray (protocol 5's in-band buffer) is private and writable: the array adopts it. Bytes
        # are immutable (the array would be read-only) and a buffer used twice would alias: copy those.
        if type(raw) is bytearray and id(raw) not in self.adopted:
            self.adopted.add(id(raw))
            return array
        return array.copy(order="K")


def _reconstruct_parts(rec: _Record) -> tuple[np.dtype, tuple[int, ...], str, bytes]:
    """``_reconstruct(ndarray, (0,), b'b')`` then ``__setstate__((1, shape, dtype, fortran, raw))``."""
    args = rec.args
    if len(args) != 3 or type(args[0]) is not _StandIn or args[0].call is not _STAND_INS[("numpy", "ndarray")]:
        raise PickleRefused(f"_reconstruct({_short(args)}): only plain numpy.ndarray is data "
                            f"(no subclasses, masked arrays or matrices)")
    if not rec.has_state:
        raise PickleRefused("an array without its state (shape, dtype, data)")
    state = rec.state
    if type(state) is tuple and len(state) == 5:
        version, *state = state
        if type(version) is not int or version != 1:
            raise PickleRefused(f"array state version {version!r} is unknown (numpy writes 1)")
    if type(state) not in (tuple, list) or len(state) != 4:
        raise PickleRefused(f"array state {_short(rec.state)} is not (version, shape, dtype, fortran, data)")
    shape, dtype, fortran, raw = state
    if type(fortran) is not bool:
        raise PickleRefused(f"array state's Fortran flag is {fortran!r}, not True/False")
    return _dtype(dtype), _shape(shape), "F" if fortran else "C", _raw(raw, "array data")


def _frombuffer_parts(rec: _Record) -> tuple[np.dtype, tuple[int, ...], str, bytes, tuple[int, ...] | None]:
    """Protocol 5: ``_frombuffer(buffer, dtype, shape, order[, axis_order])``."""
    args = rec.args
    if rec.has_state or len(args) not in (4, 5):
        raise PickleRefused(f"_frombuffer({_short(args)}): expected (buffer, dtype, shape, order[, axis_order])")
    raw, dtype, shape, order = args[:4]
    axes = args[4] if len(args) == 5 else None
    shape = _shape(shape)
    if order not in ("C", "F", "K"):
        raise PickleRefused(f"_frombuffer order {order!r} is not 'C', 'F' or 'K'")
    if axes is not None:
        if order != "K" or type(axes) is not tuple or sorted(axes) != list(range(len(shape))) or not all(
                type(a) is int for a in axes):
            raise PickleRefused(f"_frombuffer axis order {axes!r} is not a permutation of the {len(shape)} axes")
    elif order == "K":
        order = "C"
    return _dtype(dtype), shape, order, _raw(raw, "array buffer"), axes


def _dtype(rec: Any) -> np.dtype:
    """A recorded ``numpy.dtype(typestr, align, copy)`` + state, as a numpy dtype (or refused)."""
    if type(rec) is not _Record or rec.what != "dtype":
        raise PickleRefused(f"dtype {_short(rec)} is not a numpy.dtype(...) call")
    args = rec.args
    if not 1 <= len(args) <= 3 or not isinstance(args[0], str) or not all(type(a) is bool for a in args[1:]):
        raise PickleRefused(f"numpy.dtype{_short(args)}: expected (typestr, align, copy)")
    typestr = args[0]
    match = _TYPESTR.match(typestr)
    if not match:
        raise PickleRefused(f"dtype {typestr!r} is refused: only {_ALLOWED_KINDS} are data "
                            f"(no object, void, structured or datetime dtypes)")
    kind, size = match.group(1), int(match.group(2))
    if kind in NUMERIC_SIZES and size not in NUMERIC_SIZES[kind]:
        raise PickleRefused(f"dtype {typestr!r} is refused: {kind!r} comes in sizes {NUMERIC_SIZES[kind]}")
    if kind in "US" and size < 1:
        raise PickleRefused(f"dtype {typestr!r} is refused: text needs at least one character")
    itemsize = 4 * size if kind == "U" else size
    if not rec.has_state:
        raise PickleRefused(f"dtype {typestr!r} has no state (numpy writes its byte order there)")
    state = rec.state
    if type(state) is not tuple or len(state) not in (8, 9) or state[0] not in (3, 4) or (
            len(state) == 9 and state[8] is not None):
        raise PickleRefused(f"dtype {typestr!r} state {_short(state)} is not numpy's (3, byteorder, ...)")
    _, byteorder, subarray, names, fields, elsize, alignment, flags = state[:8]
    if subarray is not None or names is not None or fields is not None:
        raise PickleRefused(f"dtype {typestr!r} declares fields or a sub-array in its state: structured "
                            f"dtypes are not data here")
    if not all(type(v) is int for v in (elsize, alignment, flags)) or elsize not in (-1, itemsize):
        raise PickleRefused(f"dtype {typestr!r} state gives item size {elsize!r}; expected {itemsize}")
    multibyte = kind == "U" or (kind in NUMERIC_SIZES and size > 1)
    allowed = ("<", ">") if multibyte else ("|", "<", ">")
    if byteorder not in allowed:
        raise PickleRefused(f"dtype {typestr!r} byte order {byteorder!r}: expected one of {allowed}")
    return np.dtype(f"{'|' if not multibyte else byteorder}{kind}{size}")


def _shape(shape: Any) -> tuple[int, ...]:
    if type(shape) not in (tuple, list) or len(shape) > MAX_DIMS or not all(
            type(d) is int and d >= 0 for d in shape):
        raise PickleRefused(f"array shape {_short(shape)} is not a tuple of at most {MAX_DIMS} integers >= 0")
    return tuple(shape)


def _raw(raw: Any, what: str) -> bytes | bytearray:
    if type(raw) in (bytes, bytearray):
        return raw
    if type(raw) is str:  # a Python 2 pickle's str, decoded as latin-1 (numpy re-encodes it too)
        return raw.encode("latin-1")
    raise PickleRefused(f"{what} is a {type(raw).__name__}, not bytes (object arrays are not data)")


def _check_key(key: Any) -> Any:
    if type(key) in _SCALARS and type(key) is not bytearray:
        return key
    if type(key) is tuple:
        for item in key:
            _check_key(item)
        return key
    raise PickleRefused(f"{_kind(key)} used as a dict key or set member")


class _BoundedRepr(reprlib.Repr):
    """reprlib without its blind spots: bytes are cut before they are repr'd, huge ints too."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxstring, self.maxother, self.maxlong = 3, 40, 40, 40

    def repr_bytes(self, value: bytes, level: int) -> str:
        return repr(value[:20]) + ("..." if len(value) > 20 else "")

    repr_bytearray = repr_bytes

    def repr_int(self, value: int, level: int) -> str:
        return repr(value) if abs(value) < 10**30 else f"<int of {value.bit_length()} bits>"


_BOUNDED = _BoundedRepr()


def _kind(value: Any) -> str:
    """What a parsed value is, in a message's words."""
    if type(value) is _Record:
        return f"a numpy {value.what} ({_short(value)})"
    if type(value) is _StandIn:
        return f"a reference to {value.name}"
    return f"a {type(value).__name__} object"


def _short(value: Any) -> str:
    """A bounded repr of attacker-chosen values for a message (one line, at most 80 characters)."""
    try:
        text = " ".join(_BOUNDED.repr(value).split())
    except Exception:  # noqa: BLE001 - a message must never fail on what it describes
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."
