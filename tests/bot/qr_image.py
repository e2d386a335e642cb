"""What a QR code PNG of the bot encodes, checked without a QR decoder (none is installed):
the PNG's modules are read back and compared with segno's symbol for the expected text. So a
QR of other content (an upper-cased password, a missing prefix) is told apart from the right
one. For segno's 1-bit greyscale PNGs, the kind the bot sends."""

from __future__ import annotations

import struct
import zlib

import segno

_PNG = b"\x89PNG\r\n\x1a\n"


def _pixels(png: bytes) -> list[list[bool]]:
    """Dark pixels, row by row, of a non-interlaced 1-bit greyscale PNG."""
    assert png.startswith(_PNG), "not a PNG"
    pos, data, width, height = len(_PNG), b"", 0, 0
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, body = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert (depth, colour, interlace) == (1, 0, 0), "not a 1-bit greyscale PNG"
        elif kind == b"IDAT":
            data += body
        pos += 12 + length
    raw, stride = zlib.decompress(data), (width + 7) // 8
    rows: list[list[bool]] = []
    previous = bytearray(stride)
    for y in range(height):
        line = raw[y * (stride + 1) : (y + 1) * (stride + 1)]
        row = _unfilter(line[0], bytearray(line[1:]), previous)
        rows.append([not (row[x // 8] >> (7 - x % 8)) & 1 for x in range(width)])
        previous = row
    return rows


def _unfilter(kind: int, row: bytearray, up: bytearray) -> bytearray:
    for i in range(len(row)):
        left = row[i - 1] if i else 0
        above, corner = up[i], (up[i - 1] if i else 0)
        if kind == 1:
            row[i] = (row[i] + left) & 0xFF
        elif kind == 2:
            row[i] = (row[i] + above) & 0xFF
        elif kind == 3:
            row[i] = (row[i] + (left + above) // 2) & 0xFF
        elif kind == 4:
            guess = left + above - corner
            near = min((abs(guess - v), n) for n, v in enumerate((left, above, corner)))[1]
            row[i] = (row[i] + (left, above, corner)[near]) & 0xFF
    return row


def modules(png: bytes) -> list[list[bool]]:
    """The symbol's dark modules, quiet zone cut off (module size from the finder pattern)."""
    pixels = _pixels(png)
    top = next(y for y, row in enumerate(pixels) if any(row))
    left = pixels[top].index(True)
    run = next(x for x in range(left, len(pixels[top])) if not pixels[top][x]) - left
    size = run // 7  # the top-left finder pattern is 7 modules wide
    right = max(x for x, dark in enumerate(pixels[top]) if dark) + 1
    count = (right - left) // size
    return [
        [pixels[top + r * size + size // 2][left + c * size + size // 2] for c in range(count)]
        for r in range(count)
    ]


def encodes(png: bytes, text: str) -> bool:
    """Whether the PNG is a QR code of exactly `text` (at any error correction level)."""
    seen = modules(png)
    for error in "lmqh":
        for boost in (True, False):
            symbol = segno.make(text, error=error, boost_error=boost)
            if [[bool(m) for m in row] for row in symbol.matrix] == seen:
                return True
    return False
