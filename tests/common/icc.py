"""ICC profiles built byte by byte for the tests: an RGB matrix/TRC profile (ICC v2) from its colorants.

Real profiles (Display P3, Adobe RGB) are not files this project may ship; their definition is a
3x3 matrix and a tone curve, which is all a matrix/TRC profile holds, so the tests write their own.
"""
from __future__ import annotations

import struct

import numpy as np

D50 = (0.9642, 1.0, 0.8249)
# Colorants (the XYZ of each primary at full drive, adapted to D50), columns red, green, blue.
SRGB_COLORANTS = np.array([[0.4361, 0.3851, 0.1431], [0.2225, 0.7169, 0.0606], [0.0139, 0.0971, 0.7141]])
DISPLAY_P3_COLORANTS = np.array([[0.5151, 0.2919, 0.1571], [0.2412, 0.6922, 0.0666], [-0.0011, 0.0419, 0.7841]])


def srgb_decode(values: np.ndarray) -> np.ndarray:
    """sRGB's tone curve, encoded 0..1 -> linear light 0..1 (Display P3 uses the same one)."""
    return np.where(values <= 0.04045, values / 12.92, ((values + 0.055) / 1.055) ** 2.4)


def srgb_encode(values: np.ndarray) -> np.ndarray:
    values = np.clip(values, 0.0, 1.0)
    return np.where(values <= 0.0031308, values * 12.92, 1.055 * values ** (1 / 2.4) - 0.055)


def _s15(value: float) -> bytes:
    return struct.pack(">i", int(round(value * 65536)))


def _xyz(values) -> bytes:
    return b"XYZ " + bytes(4) + b"".join(_s15(v) for v in values)


def _curve(points: int = 1024) -> bytes:
    table = np.round(srgb_decode(np.linspace(0.0, 1.0, points)) * 65535).astype(">u2")
    return b"curv" + bytes(4) + struct.pack(">I", points) + table.tobytes()


def _description(text: str) -> bytes:
    ascii_text = text.encode("ascii") + b"\0"
    return (b"desc" + bytes(4) + struct.pack(">I", len(ascii_text)) + ascii_text
            + bytes(4) + bytes(4) + bytes(2) + bytes(1) + bytes(67))


def rgb_profile(colorants: np.ndarray, name: str) -> bytes:
    """The bytes of an ICC v2 display profile with these colorants and sRGB's tone curve."""
    curve = _curve()
    tags = [(b"desc", _description(name)), (b"wtpt", _xyz(D50)),
            (b"rXYZ", _xyz(colorants[:, 0])), (b"gXYZ", _xyz(colorants[:, 1])), (b"bXYZ", _xyz(colorants[:, 2])),
            (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve), (b"cprt", b"text" + bytes(4) + b"test\0")]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for signature, body in tags:
        body += bytes(-len(body) % 4)  # tags start on 4-byte boundaries
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = (struct.pack(">I", size) + bytes(4) + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ "
              + bytes(12) + b"acsp" + bytes(24) + struct.pack(">I", 0) + b"".join(_s15(v) for v in D50)
              + bytes(48))
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + data


def display_p3_to_srgb(pixels: np.ndarray) -> np.ndarray:
    """What a colour-managed viewer shows for Display P3 pixels, in sRGB 0..255 (relative colorimetric)."""
    linear_xyz = srgb_decode(pixels / 255.0) @ DISPLAY_P3_COLORANTS.T
    return srgb_encode(linear_xyz @ np.linalg.inv(SRGB_COLORANTS).T) * 255.0
