"""Camera messages -> numpy: the one decoder of the node and the bag reader. No ROS import.

Works on any object with the sensor_msgs/Image fields (height, width, encoding, is_bigendian,
step, data), as cv_bridge does: an rclpy message, a rosbags one, a SimpleNamespace. The same
for CompressedImage (format, data). Raw images are zero-copy where the layout allows: the
array is a view of the message's buffer (np.frombuffer, then a strided view that skips the
row padding of `step`).

    array = image_to_numpy(msg)                 # H x W (x C) in the message's own layout
    image, order = image_to_network_input(msg)  # view for Segmenter.segment, 'rgb' or 'bgr'
    image = compressed_to_numpy(msg)            # jpeg/png only, told by their magic bytes

A CompressedImage may carry jpeg or png (image_transport's compressed formats); OpenCV would
decode many more (TIFF, WebP, BMP, GIF ...) whatever `format` says, with no size limit we can
check first, so anything else is refused before decoding.
"""
from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np


class ImageConversionError(ValueError):
    """A message that cannot be turned into an image (or an image into a message)."""


class Encoding(NamedTuple):
    channels: int
    dtype: str           # numpy base type; byte order comes from is_bigendian
    color_order: str     # how the network should read it: 'rgb', 'bgr', 'mono'


# The encodings the node and the bag reader accept (sensor_msgs/image_encodings.hpp names).
ENCODINGS = {
    'rgb8': Encoding(3, 'u1', 'rgb'),
    'bgr8': Encoding(3, 'u1', 'bgr'),
    'rgba8': Encoding(4, 'u1', 'rgb'),
    'bgra8': Encoding(4, 'u1', 'bgr'),
    'mono8': Encoding(1, 'u1', 'mono'),
    'mono16': Encoding(1, 'u2', 'mono'),
    '8UC1': Encoding(1, 'u1', 'mono'),
    '8UC3': Encoding(3, 'u1', 'bgr'),    # OpenCV's convention for untyped 3-channel images
    '16UC1': Encoding(1, 'u2', 'mono'),
}
COMPRESSED_FORMATS = ('jpeg', 'png')


def encoding_layout(name: str) -> Encoding:
    """The layout of a supported encoding, or ImageConversionError listing the supported ones."""
    try:
        return ENCODINGS[name]
    except KeyError:
        raise ImageConversionError(
            f'unsupported image encoding {name!r}; supported: {", ".join(ENCODINGS)}') from None


def image_to_numpy(msg) -> np.ndarray:
    """The pixels of an Image as H x W (one channel) or H x W x C, a view of msg.data if possible.

    Raises ImageConversionError for an unknown encoding, empty data, a step shorter than a
    row, or data whose size is not step * height.
    """
    enc = encoding_layout(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0 or len(msg.data) == 0:
        raise ImageConversionError(f'empty image ({width}x{height}, {len(msg.data)} bytes of '
                                   f'{msg.encoding})')
    dtype = np.dtype(enc.dtype).newbyteorder('>' if msg.is_bigendian else '<')
    row_bytes = width * enc.channels * dtype.itemsize
    if step < row_bytes:
        raise ImageConversionError(f'step {step} is shorter than a row of {width} {msg.encoding} '
                                   f'pixels ({row_bytes} bytes)')
    if len(msg.data) != step * height:
        raise ImageConversionError(f'data has {len(msg.data)} bytes, expected step * height = '
                                   f'{step} * {height} = {step * height} ({msg.encoding} '
                                   f'{width}x{height})')
    flat = np.frombuffer(msg.data, dtype=np.uint8)
    # Rows of `step` bytes, of which the first row_bytes are pixels: a view, no copy.
    rows = flat.reshape(height, step)[:, :row_bytes]
    pixels = rows.view(dtype)
    if enc.channels == 1:
        return pixels
    return pixels.reshape(height, width, enc.channels)


def image_to_network_input(msg) -> tuple[np.ndarray, str]:
    """An Image as Segmenter.segment takes it: (a view of msg.data, 'rgb' or 'bgr').

    No pixel is copied: the view keeps the row padding, the alpha channel (the Segmenter
    ignores it) and 16-bit mono (the Segmenter uses value >> 8), so the frame goes from the
    message buffer straight into the Segmenter's upload buffer.
    """
    pixels = image_to_numpy(msg)
    return pixels, ('bgr' if ENCODINGS[msg.encoding].color_order == 'bgr' else 'rgb')


# ----------------------------------------------------------------------------- compressed

_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_JPEG_SOI = b'\xff\xd8'
# JPEG start-of-frame markers (baseline, progressive, lossless, ...): C0-CF but C4 (DHT),
# C8 (JPG extension) and CC (DAC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Formats OpenCV would decode, named in the refusal so the sender knows what it sent.
_OTHER_MAGIC = ((b'II*\x00', 'TIFF'), (b'MM\x00*', 'TIFF'), (b'BM', 'BMP'), (b'GIF8', 'GIF'),
                (b'\x00\x00\x00\x0cjP  ', 'JPEG 2000'), (b'\xff\x4f\xff\x51', 'JPEG 2000'),
                (b'v/1\x01', 'OpenEXR'), (b'#?RADIANCE', 'Radiance HDR'))


def compressed_kind(data) -> str | None:
    """'jpeg' or 'png' from the data's magic bytes (not from a format string), else None."""
    head = bytes(memoryview(data).cast('B')[:8])
    if head == _PNG_SIGNATURE:
        return 'png'
    if head[:2] == _JPEG_SOI:
        return 'jpeg'
    return None


def _not_jpeg_or_png(msg) -> ImageConversionError:
    head = bytes(memoryview(msg.data).cast('B')[:16])
    named = next((name for magic, name in _OTHER_MAGIC if head.startswith(magic)), None)
    if head[:4] == b'RIFF' and head[8:12] == b'WEBP':
        named = 'WebP'
    what = (f'{named} data' if named
            else f'not jpeg or png data (it starts with {head[:4].hex(" ")})')
    return ImageConversionError(f'compressed image ({len(msg.data)} bytes, format '
                                f'{msg.format!r}) is {what}; only jpeg and png are decoded')


def compressed_image_size(data) -> tuple[int, int] | None:
    """(width, height) read from a PNG or JPEG header, without decoding; None if not found."""
    buf = memoryview(data).cast('B')
    if bytes(buf[:8]) == _PNG_SIGNATURE and bytes(buf[12:16]) == b'IHDR' and len(buf) >= 24:
        return (int.from_bytes(buf[16:20], 'big'), int.from_bytes(buf[20:24], 'big'))
    if bytes(buf[:2]) != _JPEG_SOI:
        return None
    buf = bytes(buf)  # find() runs in C: a long run of junk costs no Python loop
    i = 2
    while i + 4 <= len(buf):
        if buf[i] != 0xFF:                      # extraneous bytes: libjpeg skips them too
            i = buf.find(b'\xff', i)
            if i < 0:
                return None
            continue
        marker = buf[i + 1]
        if marker == 0xFF:                      # fill byte
            i += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:
            i += 2                              # markers without a length
        elif marker in (0xD9, 0xDA):            # end of image / start of scan before a frame
            return None
        elif marker in _JPEG_SOF:
            if i + 9 > len(buf):
                return None
            height = int.from_bytes(buf[i + 5:i + 7], 'big')
            width = int.from_bytes(buf[i + 7:i + 9], 'big')
            return width, height
        else:
            i += 2 + int.from_bytes(buf[i + 2:i + 4], 'big')
    return None


def _is_compressed(msg) -> bool:
    return hasattr(msg, 'format') and not hasattr(msg, 'encoding')


def check_image_pixels(msg, max_pixels: int) -> None:
    """Refuse a frame larger than max_pixels (0 = no limit) before it is decoded or copied.

    For a CompressedImage the size comes from the jpeg/png header: a 35 kB PNG can declare
    6000 x 6000 pixels (108 MB decoded, more while the network input is made). Data that is
    not jpeg/png, or whose header gives no size, is refused: its size cannot be checked.
    """
    if max_pixels <= 0:
        return
    if _is_compressed(msg):
        kind = compressed_kind(msg.data)
        if kind is None:
            raise _not_jpeg_or_png(msg)
        size = compressed_image_size(msg.data)
        if size is None:
            raise ImageConversionError(
                f'cannot decode compressed image ({len(msg.data)} bytes, format '
                f'{msg.format!r}): no image size in its {kind} header (truncated or '
                f'corrupt?); refused before decoding')
        width, height = size
    else:
        width, height = int(msg.width), int(msg.height)
    if width * height > max_pixels:
        raise ImageConversionError(
            f'{width}x{height} image ({width * height / 1e6:.1f} Mpx) is larger than '
            f'max_image_pixels={max_pixels} ({max_pixels / 1e6:.1f} Mpx); not decoded')


def compressed_to_numpy(msg, color: bool = True) -> np.ndarray:
    """Decode a jpeg/png CompressedImage: uint8 H x W x 3 BGR, or (color=False) as stored.

    As stored: mono stays H x W (ground-truth labels), alpha and 16 bits are kept. Anything
    but jpeg/png is refused before decoding.
    """
    if len(msg.data) == 0:
        raise ImageConversionError(f'empty compressed image (format {msg.format!r})')
    if compressed_kind(msg.data) is None:
        raise _not_jpeg_or_png(msg)
    flags = cv2.IMREAD_COLOR if color else cv2.IMREAD_UNCHANGED
    try:
        image = cv2.imdecode(np.frombuffer(msg.data, dtype=np.uint8), flags)
    except cv2.error as exc:  # e.g. a header beyond OpenCV's own pixel limit
        reason = str(exc).strip().splitlines()[-1]
        raise ImageConversionError(f'cannot decode compressed image ({len(msg.data)} bytes, '
                                   f'format {msg.format!r}): {reason}') from None
    if image is None or image.size == 0:
        raise ImageConversionError(f'cannot decode compressed image ({len(msg.data)} bytes, '
                                   f'format {msg.format!r}): corrupt or truncated jpeg/png')
    return image


def compressed_to_network_input(msg) -> tuple[np.ndarray, str]:
    """Decode a jpeg/png CompressedImage: (uint8 H x W x 3, 'bgr')."""
    return compressed_to_numpy(msg), 'bgr'
