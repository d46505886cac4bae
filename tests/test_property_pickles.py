"""Property: a data pickle either loads as plain data with numeric or text arrays, or is refused.

Two generators. Plain data: any array of an allowed dtype (both byte orders), shape and memory layout,
pickled by any protocol 0-5 with numpy 1.x or 2.x module paths, loads bit for bit. Hostile payloads:
numpy's reconstruction calls assembled by hand with any typestr (object, void, datetime, long double,
nonsense), any dtype state (fields, sub-arrays, byte orders), any shape, any data (bytes of any length,
lists, text), nested inside each other and inside containers, plus calls to code-running globals. The
only outcomes allowed are the project's one-line error naming the file, or data whose every array has
an allowed dtype (never an object, void or structured one).
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgecnn import safe_pickle
from edgecnn.errors import InputError
from edgecnn.readers import load_pickle_safely
from tests.pickle_corpus.build import Call, Global, dumps, frombuffer, reconstruct

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])
ALLOWED = ["?", "i1", "u1", "S3", "<i2", ">i2", "<u4", ">i8", "<f2", ">f4", "<f8", ">f8", "<c8", ">c16",
           "<U2", ">U1"]
CORES = st.sampled_from(["numpy.core", "numpy._core"])


def _layouts(array: np.ndarray) -> st.SearchStrategy[np.ndarray]:
    """The array as stored, Fortran-ordered, transposed, or a strided view (numpy pickles each its own way)."""
    views = [array, np.asfortranarray(array), array.T]
    if array.ndim and array.shape[0] > 1:
        views.append(array[::2])
    return st.sampled_from(views)


@FUZZ
@given(array=st.sampled_from(ALLOWED).flatmap(lambda dt: hnp.arrays(np.dtype(dt), hnp.array_shapes(
    min_dims=0, max_dims=4, min_side=0, max_side=5))).flatmap(_layouts),
       protocol=st.integers(0, 5), core=CORES, container=st.sampled_from(["dict", "list", "tuple", "bare"]))
def test_any_plain_array_round_trips_bit_for_bit(array, protocol, core, container):
    wrapped = {"dict": {"x": array}, "list": [array], "tuple": (array,), "bare": array}[container]
    loaded = safe_pickle.loads(dumps(wrapped, protocol, core))
    out = loaded if container == "bare" else (loaded["x"] if container == "dict" else loaded[0])
    assert type(out) is np.ndarray and out.dtype == array.dtype and out.shape == array.shape
    assert out.tobytes() == array.tobytes()  # C-order bytes: values and layout-independent equality
    assert out.flags.writeable  # a copy, or protocol 5's own buffer: never read-only bytes


TYPESTRS = st.one_of(st.sampled_from(["O8", "O4", "V8", "V16", "M8", "m8", "f16", "c32", "b2", "i3", "U0", "S0",
                                      "f8", "i4", "u1", "b1", "U2", "S4", "c8", "f2", "<f8", "|O", "a", "?"]),
                     st.text(max_size=6))
BYTEORDERS = st.sampled_from(["<", ">", "|", "=", "x", None])


def _dtype_calls(inner: st.SearchStrategy) -> st.SearchStrategy[Call]:
    fields = st.dictionaries(st.text(max_size=3), st.tuples(inner, st.integers(-4, 64)), max_size=2)
    state = st.tuples(st.sampled_from([3, 4, 2]), BYTEORDERS, st.one_of(st.none(), st.tuples(inner, st.just((2,)))),
                      st.one_of(st.none(), st.tuples(st.text(max_size=3))), st.one_of(st.none(), fields),
                      st.integers(-1, 64), st.integers(-1, 16), st.sampled_from([0, 8, 63]))
    args = st.one_of(st.tuples(TYPESTRS, st.booleans(), st.booleans()),
                     st.tuples(st.lists(st.tuples(st.text(max_size=2), TYPESTRS), max_size=2), st.booleans(),
                               st.booleans()))
    return st.builds(lambda a, s, n: Call(Global("numpy", "dtype"), a, *([s] * n)), args, state,
                     st.integers(0, 2))


SHAPES = st.one_of(st.lists(st.integers(0, 4), max_size=3).map(tuple),
                   st.lists(st.one_of(st.integers(-2, 2**62), st.booleans(), st.floats(0, 3)), max_size=3).map(tuple),
                   st.just((1,) * 33))
RAW = st.one_of(st.binary(max_size=96), st.lists(st.floats(), max_size=3), st.text(max_size=8), st.none())


@st.composite
def _near_valid(draw) -> Call:
    """An array call as numpy writes it (allowed dtype, numpy's own state), its byte count exact or a
    little off, so the hostile generator also produces arrays that load."""
    dt = np.dtype(draw(st.sampled_from(ALLOWED)))
    shape = tuple(draw(st.lists(st.integers(0, 3), max_size=3)))
    size = int(np.prod(shape)) * dt.itemsize + draw(st.sampled_from([0, 0, 0, 1, -1, dt.itemsize]))
    raw = draw(st.binary(min_size=max(0, size), max_size=max(0, size)))
    if dt.kind == "U":  # valid code points, so that a well-formed text array loads
        raw = np.frombuffer(raw[: len(raw) // 4 * 4], dtype=dt.byteorder + "u4").__mod__(0x110000).astype(
            dt.byteorder + "u4").tobytes() + raw[len(raw) // 4 * 4:]
    _, args, state = dt.__reduce__()
    call = Call(Global("numpy", "dtype"), args, state)
    core = draw(CORES)
    if draw(st.booleans()):
        return reconstruct(call, shape, raw, fortran=draw(st.booleans()), core=core)
    return frombuffer(raw, call, shape, draw(st.sampled_from(["C", "F"])), core=core)


def _numpy_records(inner: st.SearchStrategy) -> st.SearchStrategy:
    dtypes = st.one_of(_dtype_calls(inner), inner)
    return st.one_of(
        _near_valid(),
        st.builds(lambda dt, shape, raw, fortran, core: reconstruct(dt, shape, raw, fortran=fortran, core=core),
                  dtypes, SHAPES, RAW, st.one_of(st.booleans(), st.integers(0, 2)), CORES),
        st.builds(lambda raw, dt, shape, order, core: frombuffer(raw, dt, shape, order, core=core),
                  RAW, dtypes, SHAPES, st.sampled_from(["C", "F", "K", "Z"]), CORES),
        st.builds(lambda dt, raw, core: Call(Global(f"{core}.multiarray", "scalar"), (dt, raw)), dtypes, RAW, CORES),
        st.builds(lambda shape, dt, raw: Call(Global("numpy", "ndarray"), (shape, dt, raw)), SHAPES, dtypes, RAW),
    )


DANGEROUS = st.sampled_from([("posix", "system"), ("os", "system"), ("builtins", "eval"), ("builtins", "exec"),
                             ("__builtin__", "eval"), ("subprocess", "Popen"), ("builtins", "getattr"),
                             ("numpy", "load"), ("numpy", "frombuffer"), ("numpy.core.multiarray", "array"),
                             ("pickle", "loads"), ("copyreg", "_reconstructor"), ("builtins", "__import__")])
LEAVES = st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=4), st.binary(max_size=8),
                   st.builds(lambda g, a: Call(Global(*g), (a,)), DANGEROUS, st.text(max_size=8)))
PAYLOADS = st.recursive(LEAVES, lambda inner: st.one_of(
    _numpy_records(inner), st.lists(inner, max_size=3), st.tuples(inner, inner),
    st.dictionaries(st.sampled_from(["signal", "label", "time", "fs"]), inner, max_size=3)), max_leaves=8)


def _assert_only_allowed_arrays(value, depth=0) -> None:
    assert depth < 80
    if isinstance(value, dict):
        for key, item in value.items():
            _assert_only_allowed_arrays(key, depth + 1)
            _assert_only_allowed_arrays(item, depth + 1)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            _assert_only_allowed_arrays(item, depth + 1)
    elif isinstance(value, (np.ndarray, np.generic)):
        dtype = np.asarray(value).dtype
        assert dtype.kind in "biufcUS" and not dtype.hasobject and dtype.fields is None and dtype.subdtype is None
    else:
        assert isinstance(value, (str, bytes, bytearray, int, float, complex, type(None))), type(value)


def _refused_or_plain(path) -> None:
    """The only two outcomes: the one-line error naming the file, or plain data."""
    try:
        loaded = load_pickle_safely(path)
    except InputError as exc:
        assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc)
    else:
        _assert_only_allowed_arrays(loaded)


@FUZZ
@given(payload=PAYLOADS, protocol=st.integers(0, 5))
def test_any_hand_made_numpy_payload_is_refused_or_plain(tmp_path, payload, protocol):
    path = tmp_path / "payload.pkl"
    path.write_bytes(dumps(payload, protocol))
    _refused_or_plain(path)


@FUZZ
@given(payload=PAYLOADS, cut=st.floats(0, 1, exclude_max=True), flips=st.lists(
    st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), max_size=4))
def test_payloads_cut_or_flipped_are_refused_or_plain(tmp_path, payload, cut, flips):
    data = bytearray(dumps(payload, 4))
    for where, mask in flips:
        data[int(where * len(data))] ^= mask
    path = tmp_path / "mutated.pkl"
    path.write_bytes(bytes(data[: max(1, int(len(data) * (1 - cut / 2)))]))
    _refused_or_plain(path)
