"""A TFLite file's input/output tensors and named metadata, read with the flatbuffers runtime alone.

What the bundle loader needs to cross-check a manifest against the model file it hashes: each
subgraph-0 input and output tensor (name, shape, element type, quantisation scale and zero point)
and the named metadata buffers (export embeds the bundle settings under ``edgecnn``). Field
numbers are those of TFLite's ``schema.fbs``; ``tests/test_bundle_integrity.py`` compares this
reader with TensorFlow's generated one and with LiteRT's view of the same files.

Device side: the ``flatbuffers`` runtime (pure Python) only; no TensorFlow, no interpreter. A
malformed file raises ``ValueError`` (every offset is bounds-checked against the buffer).
"""

from __future__ import annotations

import dataclasses

from flatbuffers import encode, table
from flatbuffers import number_types as fb_types

FILE_IDENTIFIER = b"TFL3"
#: schema.fbs TensorType -> numpy dtype name (the types a bundle's models use, and a few more).
TENSOR_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 6: "bool", 7: "int16",
                9: "int8", 10: "float64", 15: "uint32", 16: "uint16"}
#: schema.fbs BuiltinOperator.CUSTOM: the operator is named by its custom_code string.
CUSTOM_OPERATOR = 32
# vtable slots (4 + 2 x field index in schema.fbs)
_MODEL_OPERATOR_CODES, _MODEL_SUBGRAPHS, _MODEL_BUFFERS, _MODEL_METADATA = 6, 8, 12, 16
_OPCODE_DEPRECATED_BUILTIN, _OPCODE_CUSTOM, _OPCODE_BUILTIN = 4, 6, 10
_SUBGRAPH_TENSORS, _SUBGRAPH_INPUTS, _SUBGRAPH_OUTPUTS = 4, 6, 8
_TENSOR_SHAPE, _TENSOR_TYPE, _TENSOR_NAME, _TENSOR_QUANTIZATION = 4, 6, 10, 12
_QUANT_SCALE, _QUANT_ZERO_POINT = 8, 10
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 4, 6, 8
_METADATA_NAME, _METADATA_BUFFER = 4, 6


@dataclasses.dataclass(frozen=True)
class TFLiteTensor:
    """One tensor as the file declares it; ``scale``/``zero_point`` are empty for float tensors."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: tuple[float, ...]
    zero_point: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class TFLiteModel:
    inputs: tuple[TFLiteTensor, ...]
    outputs: tuple[TFLiteTensor, ...]
    metadata: dict[str, bytes]
    operators: tuple[int | str, ...] = ()
    """The model's operator codes (schema.fbs ``BuiltinOperator`` numbers; a custom op's name)."""


def read_tflite(data: bytes) -> TFLiteModel:
    """Subgraph 0's inputs and outputs, the operator codes and every named metadata buffer of a ``.tflite`` file."""
    reader = _Reader(bytes(data))
    model = reader.root()
    subgraphs = reader.tables(model, _MODEL_SUBGRAPHS)
    if not subgraphs:
        raise ValueError("the model has no subgraph")
    graph = subgraphs[0]
    tensors = reader.tables(graph, _SUBGRAPH_TENSORS)

    def tensor(index: int) -> TFLiteTensor:
        if not 0 <= index < len(tensors):
            raise ValueError(f"tensor index {index} out of range ({len(tensors)} tensors)")
        t = tensors[index]
        quant = reader.table(t, _TENSOR_QUANTIZATION)
        kind = reader.scalar(t, _TENSOR_TYPE, fb_types.Int8Flags, 0)
        return TFLiteTensor(name=reader.string(t, _TENSOR_NAME),
                            shape=tuple(reader.scalars(t, _TENSOR_SHAPE, fb_types.Int32Flags)),
                            dtype=TENSOR_TYPES.get(kind, f"type{kind}"),
                            scale=tuple(reader.scalars(quant, _QUANT_SCALE, fb_types.Float32Flags)) if quant else (),
                            zero_point=tuple(reader.scalars(quant, _QUANT_ZERO_POINT, fb_types.Int64Flags))
                            if quant else ())

    buffers = reader.tables(model, _MODEL_BUFFERS)
    metadata = {}
    for entry in reader.tables(model, _MODEL_METADATA):
        index = reader.scalar(entry, _METADATA_BUFFER, fb_types.Uint32Flags, 0)
        if not 0 <= index < len(buffers):
            raise ValueError(f"metadata buffer index {index} out of range ({len(buffers)} buffers)")
        metadata[reader.string(entry, _METADATA_NAME)] = reader.buffer_data(buffers[index])
    return TFLiteModel(inputs=tuple(tensor(i) for i in reader.scalars(graph, _SUBGRAPH_INPUTS, fb_types.Int32Flags)),
                       outputs=tuple(tensor(i) for i in reader.scalars(graph, _SUBGRAPH_OUTPUTS,
                                                                       fb_types.Int32Flags)),
                       metadata=metadata, operators=tuple(_operator_code(reader, c)
                                                          for c in reader.tables(model, _MODEL_OPERATOR_CODES)))


def _operator_code(reader: _Reader, code: table.Table) -> int | str:
    # builtin_code (int32) superseded deprecated_builtin_code (int8) at 127 operators; files
    # written since fill both, older ones only the deprecated one: the larger is the operator.
    builtin = max(reader.scalar(code, _OPCODE_DEPRECATED_BUILTIN, fb_types.Int8Flags, 0),
                  reader.scalar(code, _OPCODE_BUILTIN, fb_types.Int32Flags, 0))
    custom = reader.string(code, _OPCODE_CUSTOM) if code.Offset(_OPCODE_CUSTOM) else ""
    return custom if builtin == CUSTOM_OPERATOR else builtin


class _Reader:
    """flatbuffers' Table accessors with every position checked against the buffer's length."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def _at(self, pos: int, width: int) -> int:
        if not 0 <= pos <= len(self.data) - width:
            raise ValueError(f"offset {pos} outside the {len(self.data)}-byte file")
        return pos

    def _uoffset(self, pos: int) -> int:
        return encode.Get(fb_types.UOffsetTFlags.packer_type, self.data, self._at(pos, 4))

    def _table_at(self, pos: int) -> table.Table:
        tab = table.Table(self.data, self._at(pos, 4))
        vtable = pos - encode.Get(fb_types.SOffsetTFlags.packer_type, self.data, pos)
        self._at(vtable, 4)
        self._at(vtable, encode.Get(fb_types.VOffsetTFlags.packer_type, self.data, vtable))
        return tab

    def root(self) -> table.Table:
        if len(self.data) < 8 or self.data[4:8] != FILE_IDENTIFIER:
            raise ValueError("not a TFLite flatbuffer (no TFL3 file identifier)")
        return self._table_at(self._uoffset(0))

    def _field(self, tab: table.Table | None, slot: int) -> int:
        return tab.Offset(slot) if tab is not None else 0

    def _vector(self, tab: table.Table, slot: int, width: int) -> tuple[int, int]:
        """(start, length) of a vector field, or (0, 0) when absent."""
        offset = self._field(tab, slot)
        if not offset:
            return 0, 0
        field = self._at(tab.Pos + offset, 4)
        start = self._at(field + self._uoffset(field), 4)
        length = self._uoffset(start)
        self._at(start + 4, length * width)
        return start + 4, length

    def table(self, tab: table.Table | None, slot: int) -> table.Table | None:
        offset = self._field(tab, slot)
        if not offset:
            return None
        field = self._at(tab.Pos + offset, 4)
        return self._table_at(field + self._uoffset(field))

    def tables(self, tab: table.Table | None, slot: int) -> list[table.Table]:
        start, length = self._vector(tab, slot, 4) if tab is not None else (0, 0)
        return [self._table_at(start + 4 * i + self._uoffset(start + 4 * i)) for i in range(length)]

    def scalars(self, tab: table.Table | None, slot: int, flags) -> list:
        start, length = self._vector(tab, slot, flags.bytewidth) if tab is not None else (0, 0)
        return [flags.py_type(encode.Get(flags.packer_type, self.data, start + flags.bytewidth * i))
                for i in range(length)]

    def scalar(self, tab: table.Table, slot: int, flags, default):
        offset = self._field(tab, slot)
        if not offset:
            return default
        return flags.py_type(encode.Get(flags.packer_type, self.data, self._at(tab.Pos + offset, flags.bytewidth)))

    def string(self, tab: table.Table, slot: int) -> str:
        start, length = self._vector(tab, slot, 1)
        return self.data[start:start + length].decode("utf-8", errors="replace")

    def buffer_data(self, buffer: table.Table) -> bytes:
        start, length = self._vector(buffer, _BUFFER_DATA, 1)
        if length:
            return self.data[start:start + length]
        offset = self.scalar(buffer, _BUFFER_OFFSET, fb_types.Uint64Flags, 0)
        size = self.scalar(buffer, _BUFFER_SIZE, fb_types.Uint64Flags, 0)
        if offset > 1:  # data stored after the flatbuffer (models over 2 GB)
            return self.data[self._at(offset, size):offset + size]
        return b""
