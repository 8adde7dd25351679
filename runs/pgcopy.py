"""PostgreSQL's binary COPY format for blocks of points (runs/points.py), in plain Python:
no Django, so the benchmarks pack blocks exactly as the studio does.

A block row is the field count (5), the series id and block number (int8 each), then three
one-dimensional arrays (steps int8[], values float8[], times float8[]). An array is its header
(dimensions 1, whether it holds a NULL, the element type's oid, its length, lower bound 1) and
each element's length and big-endian bytes; a NULL element (NaN) is length -1 and no bytes.
"""

import struct
from collections.abc import Sequence

BLOCK = 64  # points a block; migration 0018 freezes the same number
HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, no header extension
TRAILER = b"\xff\xff"
COLUMNS = "series_id, block, steps, vals, times"
_ROW_HEAD = struct.Struct(">hiqiq")
_ARRAY_HEAD = struct.Struct(">iiiiii")  # the field's length, then the array's header
_INT8, _FLOAT8 = 20, 701  # element type oids


def _elements(fmt: str, column: Sequence) -> bytes:
    """Every element of a column as an array's elements: length 8 and the value's 8 bytes."""
    n = len(column)
    packed = struct.pack(f">{n}{fmt}", *column)
    out = bytearray(b"\x00\x00\x00\x08" + bytes(8)) * n
    for k in range(8):
        out[4 + k :: 12] = packed[k::8]
    return bytes(out)


def block_rows(
    sid: int,
    first: int,
    steps: Sequence,
    values: Sequence,
    times: Sequence,
    *,
    has_nan: bool = True,
) -> bytes:
    """The block rows of one series' points from seq `first` (a multiple of BLOCK) on. Each
    column is packed once for all its blocks, then cut: no Python step per point. `has_nan`
    False: the caller knows no value is None (ingest's validation does), so none is looked for."""
    n = len(values)
    steps_b, times_b = _elements("q", steps), _elements("d", times)
    has_nan = has_nan and None in values
    if has_nan:  # NaN, rare: the value column element by element
        nan = struct.pack(">i", -1)
        each = [nan if v is None else struct.pack(">id", 8, v) for v in values]
    else:
        vals_b = _elements("d", values)
    out = []
    for j, a in enumerate(range(0, n, BLOCK)):
        b = min(n, a + BLOCK)
        s, t = steps_b[12 * a : 12 * b], times_b[12 * a : 12 * b]
        if has_nan:
            v, has_null = b"".join(each[a:b]), int(None in values[a:b])
        else:
            v, has_null = vals_b[12 * a : 12 * b], 0
        out += (
            _ROW_HEAD.pack(5, 8, sid, 8, first // BLOCK + j),
            _ARRAY_HEAD.pack(20 + len(s), 1, 0, _INT8, b - a, 1),
            s,
            _ARRAY_HEAD.pack(20 + len(v), 1, has_null, _FLOAT8, b - a, 1),
            v,
            _ARRAY_HEAD.pack(20 + len(t), 1, 0, _FLOAT8, b - a, 1),
            t,
        )
    return b"".join(out)
