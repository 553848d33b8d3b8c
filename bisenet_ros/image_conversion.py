"""sensor_msgs Image / CompressedImage <-> numpy, without cv_bridge.

Decoding (message -> numpy) is bisenet_ros.image_decoding, which needs no ROS and serves the
bag reader too; its functions are imported here for the node. Encoding copies the pixels
once, straight into the array.array the message keeps (no per-element Python loop).

    image, order = image_to_network_input(msg)  # view for Segmenter.segment, 'rgb' or 'bgr'
    msg = numpy_to_image(labels, 'mono8', header)
"""
from __future__ import annotations

import array
import sys

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from bisenet_ros.image_decoding import (COMPRESSED_FORMATS, ENCODINGS, ImageConversionError,
                                        check_image_pixels, compressed_image_size,
                                        compressed_to_network_input, encoding_layout,
                                        image_to_network_input, image_to_numpy)

# The decoders are the node's too: it imports everything about images from here.
__all__ = ['COMPRESSED_FORMATS', 'ENCODINGS', 'ImageConversionError', 'check_image_pixels',
           'compressed_image_size', 'compressed_to_network_input', 'image_to_network_input',
           'image_to_numpy', 'labels_to_compressed', 'numpy_to_compressed', 'numpy_to_image']

_HOST_BIGENDIAN = sys.byteorder == 'big'


def numpy_to_image(image: np.ndarray, encoding: str, header=None) -> Image:
    """An array (H x W or H x W x C, matching the encoding) as an Image with step = row bytes.

    The pixels are copied once, into the array.array that msg.data holds.
    """
    enc = encoding_layout(encoding)
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
