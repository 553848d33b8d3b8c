"""sensor_msgs Image / CompressedImage <-> numpy, without cv_bridge.

Decoding is zero-copy where the layout allows: the array is a view of the message's buffer
(np.frombuffer, then a strided view that skips the row padding of `step`). Encoding copies the
pixels once, straight into the array.array the message keeps (no per-element Python loop).

    array = image_to_numpy(msg)                 # H x W (x C) in the message's own layout
    image, order = image_to_network_input(msg)  # view for Segmenter.segment, 'rgb' or 'bgr'
    msg = numpy_to_image(labels, 'mono8', header)
"""
from __future__ import annotations

import array
import sys
from typing import NamedTuple

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image


class ImageConversionError(ValueError):
    """A message that cannot be turned into an image (or an image into a message)."""


class Encoding(NamedTuple):
    channels: int
    dtype: str           # numpy base type; byte order comes from is_bigendian
    color_order: str     # how the network should read it: 'rgb', 'bgr', 'mono'


# The encodings the node accepts (sensor_msgs/image_encodings.hpp names).
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
_HOST_BIGENDIAN = sys.byteorder == 'big'


def _encoding(name: str) -> Encoding:
    try:
        return ENCODINGS[name]
    except KeyError:
        raise ImageConversionError(
            f'unsupported image encoding {name!r}; supported: {", ".join(ENCODINGS)}') from None


def image_to_numpy(msg: Image) -> np.ndarray:
    """The pixels of an Image as H x W (one channel) or H x W x C, a view of msg.data if possible.

    Raises ImageConversionError for an unknown encoding, empty data, a step shorter than a
    row, or data whose size is not step * height.
    """
    enc = _encoding(msg.encoding)
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


def image_to_network_input(msg: Image) -> tuple[np.ndarray, str]:
    """An Image as Segmenter.segment takes it: (a view of msg.data, 'rgb' or 'bgr').

    No pixel is copied: the view keeps the row padding, the alpha channel (the Segmenter
    ignores it) and 16-bit mono (the Segmenter uses value >> 8), so the frame goes from the
    message buffer straight into the Segmenter's upload buffer.
    """
    pixels = image_to_numpy(msg)
    enc = ENCODINGS[msg.encoding]
    return pixels, ('bgr' if enc.color_order == 'bgr' else 'rgb')


def numpy_to_image(image: np.ndarray, encoding: str, header=None) -> Image:
    """An array (H x W or H x W x C, matching the encoding) as an Image with step = row bytes.

    The pixels are copied once, into the array.array that msg.data holds.
    """
    enc = _encoding(encoding)
    image = np.asarray(image)
    expected = np.dtype(enc.dtype)
    if image.dtype.kind != expected.kind or image.dtype.itemsize != expected.itemsize:
        raise ImageConversionError(f'{encoding} needs a {expected.name} array, got '
                                   f'{image.dtype}')
    shape_ok = (image.ndim == 2 and enc.channels == 1) or (
        image.ndim == 3 and image.shape[2] == enc.channels)
    if not shape_ok or image.size == 0:
        raise ImageConversionError(f'{encoding} needs a non-empty H x W'
                                   f'{"" if enc.channels == 1 else f" x {enc.channels}"} array, '
                                   f'got shape {image.shape}')
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(image.shape[0]), int(image.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = image.dtype.byteorder == '>' or (
        image.dtype.byteorder == '=' and _HOST_BIGENDIAN and image.dtype.itemsize > 1)
    msg.step = msg.width * enc.channels * image.dtype.itemsize
    msg.data = _to_byte_array(image)
    return msg


def _to_byte_array(image: np.ndarray) -> array.array:
    # The generated setter takes an array.array('B') as is; anything else is checked element
    # by element in Python, which costs more than the inference for a 720p frame.
    data = array.array('B')
    data.frombytes(np.ascontiguousarray(image).data.cast('B'))
    return data


_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
# JPEG start-of-frame markers (baseline, progressive, lossless, ...): C0-CF but C4 (DHT),
# C8 (JPG extension) and CC (DAC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def compressed_image_size(data) -> tuple[int, int] | None:
    """(width, height) read from a PNG or JPEG header, without decoding; None if not found."""
    buf = memoryview(data).cast('B')
    if bytes(buf[:8]) == _PNG_SIGNATURE and bytes(buf[12:16]) == b'IHDR' and len(buf) >= 24:
        return (int.from_bytes(buf[16:20], 'big'), int.from_bytes(buf[20:24], 'big'))
    if bytes(buf[:2]) != b'\xff\xd8':
        return None
    i = 2
    while i + 4 <= len(buf):
        if buf[i] != 0xFF:
            return None
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


def check_image_pixels(msg: Image | CompressedImage, max_pixels: int) -> None:
    """Refuse a frame larger than max_pixels (0 = no limit) before it is decoded or copied.

    For a CompressedImage the size comes from the jpeg/png header: a 35 kB PNG can declare
    6000 x 6000 pixels (108 MB decoded, more while the network input is made).
    """
    if max_pixels <= 0:
        return
    if isinstance(msg, CompressedImage):
        size = compressed_image_size(msg.data)
        if size is None:
            return  # not a jpeg/png header we can read: decoding reports it
        width, height = size
    else:
        width, height = int(msg.width), int(msg.height)
    if width * height > max_pixels:
        raise ImageConversionError(
            f'{width}x{height} image ({width * height / 1e6:.1f} Mpx) is larger than '
            f'max_image_pixels={max_pixels} ({max_pixels / 1e6:.1f} Mpx); not decoded')


def compressed_to_network_input(msg: CompressedImage) -> tuple[np.ndarray, str]:
    """Decode a jpeg/png CompressedImage: (uint8 H x W x 3, 'bgr')."""
    if len(msg.data) == 0:
        raise ImageConversionError(f'empty compressed image (format {msg.format!r})')
    try:
        image = cv2.imdecode(np.frombuffer(msg.data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:  # e.g. a header beyond OpenCV's own pixel limit
        reason = str(exc).strip().splitlines()[-1]
        raise ImageConversionError(f'cannot decode compressed image ({len(msg.data)} bytes, '
                                   f'format {msg.format!r}): {reason}') from None
    if image is None or image.size == 0:
        raise ImageConversionError(f'cannot decode compressed image ({len(msg.data)} bytes, '
                                   f'format {msg.format!r}): corrupt or not jpeg/png')
    return image, 'bgr'


def labels_to_compressed(labels: np.ndarray, header=None) -> CompressedImage:
    """uint8 H x W labels as a lossless PNG CompressedImage, format 'mono8; png compressed'.

    image_transport's compressed format string for a mono8 PNG; any PNG decoder gives the
    label values back exactly. A 1280x720 mask of a street is ~20-60 kB instead of 921 kB.
    """
    labels = np.asarray(labels)
    if labels.dtype != np.uint8 or labels.ndim != 2 or labels.size == 0:
        raise ImageConversionError(f'labels must be a non-empty uint8 H x W array, got '
                                   f'{labels.dtype} {labels.shape}')
    # Level 1: most of the size gain of a label mask at a fraction of level 9's time.
    return _compressed_message(labels, 'png', [cv2.IMWRITE_PNG_COMPRESSION, 1],
                               'mono8; png compressed', header)


def numpy_to_compressed(image: np.ndarray, fmt: str = 'jpeg', color_order: str = 'rgb',
                        header=None, quality: int = 90) -> CompressedImage:
    """Encode uint8 H x W x 3 (in color_order) or H x W mono as a jpeg/png CompressedImage."""
    if fmt not in COMPRESSED_FORMATS:
        raise ImageConversionError(f'compressed format must be one of {COMPRESSED_FORMATS}, '
                                   f'got {fmt!r}')
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or image.size == 0:
        raise ImageConversionError(f'cannot encode an array of {image.dtype} {image.shape}; '
                                   'need uint8 H x W x 3 or H x W')
    if image.ndim == 3 and color_order == 'rgb':
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)  # cv2 encodes BGR
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if fmt == 'jpeg' else []
    # image_transport's convention: "<original encoding>; <fmt> compressed <encoding>".
    source = 'mono8' if image.ndim == 2 else ('rgb8' if color_order == 'rgb' else 'bgr8')
    return _compressed_message(
        image, fmt, params, f'{source}; {fmt} compressed {"mono8" if image.ndim == 2 else "bgr8"}',
        header)


def _compressed_message(image: np.ndarray, fmt: str, params: list[int], format_string: str,
                        header) -> CompressedImage:
    """Encode with cv2 ('jpeg' or 'png') into a CompressedImage with that format string."""
    ok, encoded = cv2.imencode('.jpg' if fmt == 'jpeg' else '.png', image, params)
    if not ok:
        raise ImageConversionError(f'cv2 could not encode {image.shape} as {fmt}')
    msg = CompressedImage(format=format_string)
    if header is not None:
        msg.header = header
    msg.data = _to_byte_array(encoded)
    return msg
