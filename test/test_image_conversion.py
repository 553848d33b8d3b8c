"""sensor_msgs <-> numpy conversion: every encoding, padded rows, byte order, and bad input."""
import array

import cv2
import numpy as np
import pytest

pytest.importorskip('sensor_msgs')
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from bisenet_core.inference.frames import to_rgb  # noqa: E402
from bisenet_ros.image_conversion import (ENCODINGS, ImageConversionError,  # noqa: E402
                                          compressed_to_network_input, image_to_network_input,
                                          image_to_numpy, numpy_to_compressed, numpy_to_image)

RNG = np.random.default_rng(0)


def _pixels(encoding, height=5, width=7):
    enc = ENCODINGS[encoding]
    dtype = np.uint16 if enc.dtype == 'u2' else np.uint8
    shape = (height, width) if enc.channels == 1 else (height, width, enc.channels)
    return RNG.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype, endpoint=True)


def _padded(image, encoding, pad, bigendian=False):
    """An Image whose rows carry `pad` bytes of junk after the pixels."""
    data = image.astype(image.dtype.newbyteorder('>' if bigendian else '<'))
    rows = data.reshape(image.shape[0], -1).view(np.uint8)
    junk = np.full((image.shape[0], pad), 0xAB, np.uint8)
    msg = Image(height=image.shape[0], width=image.shape[1], encoding=encoding,
                is_bigendian=bigendian, step=rows.shape[1] + pad)
    msg.data = array.array('B', np.hstack([rows, junk]).tobytes())
    return msg


@pytest.mark.parametrize('encoding', sorted(ENCODINGS))
def test_round_trip_every_encoding(encoding):
    image = _pixels(encoding)
    msg = numpy_to_image(image, encoding)
    assert (msg.height, msg.width, msg.encoding) == (5, 7, encoding)
    assert msg.step == 7 * ENCODINGS[encoding].channels * image.dtype.itemsize
    back = image_to_numpy(msg)
    assert back.dtype == image.dtype and np.array_equal(back, image)


@pytest.mark.parametrize('encoding', sorted(ENCODINGS))
@pytest.mark.parametrize('bigendian', [False, True])
def test_padded_step_and_byte_order(encoding, bigendian):
    image = _pixels(encoding)
    msg = _padded(image, encoding, pad=5, bigendian=bigendian)
    back = image_to_numpy(msg)
    assert np.array_equal(back, image)
    # Zero-copy: the array is a view of the message's buffer.
    assert not back.flags.owndata and np.shares_memory(back, np.frombuffer(msg.data, np.uint8))


def test_network_input_channels_and_order():
    rgb = _pixels('rgb8')
    for encoding, source, order in (('rgb8', rgb, 'rgb'), ('bgr8', rgb[..., ::-1], 'bgr'),
                                    ('8UC3', rgb[..., ::-1], 'bgr')):
        image, got_order = image_to_network_input(numpy_to_image(np.ascontiguousarray(source),
                                                                 encoding))
        assert got_order == order and np.array_equal(to_rgb(image, got_order), rgb)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    msg = numpy_to_image(rgba, 'rgba8')
    image, order = image_to_network_input(msg)
    # Alpha stays (the Segmenter ignores it): a view of the message, no copy.
    assert image.shape == rgba.shape and order == 'rgb' and np.array_equal(image, rgba)
    assert np.shares_memory(image, np.frombuffer(msg.data, np.uint8))
    assert np.array_equal(to_rgb(image, order), rgb)
    image, order = image_to_network_input(numpy_to_image(rgba[..., [2, 1, 0, 3]].copy(),
                                                         'bgra8'))
    assert order == 'bgr' and np.array_equal(to_rgb(image, order), rgb)
    mono = _pixels('mono8')
    image, _ = image_to_network_input(numpy_to_image(mono, 'mono8'))
    assert np.array_equal(image, mono)
    assert np.array_equal(to_rgb(image, 'rgb'), np.dstack([mono] * 3))


@pytest.mark.parametrize('encoding', ['mono16', '16UC1'])
@pytest.mark.parametrize('bigendian', [False, True])
def test_mono16_is_passed_on_as_a_view(encoding, bigendian):
    """16-bit mono reaches the Segmenter uncopied (it scales to 8 bit, value >> 8, itself)."""
    deep = np.array([[0, 255, 256, 65535], [1000, 40000, 32768, 511]], np.uint16)
    msg = _padded(deep, encoding, 2, bigendian)
    image, order = image_to_network_input(msg)
    assert image.dtype.kind == 'u' and image.dtype.itemsize == 2 and order == 'rgb'
    assert np.array_equal(image, deep)
    assert np.shares_memory(image, np.frombuffer(msg.data, np.uint8))


def test_numpy_to_image_copies_once_into_array_array():
    labels = np.arange(12, dtype=np.uint8).reshape(3, 4)
    msg = numpy_to_image(labels[:, ::-1], 'mono8')  # non-contiguous input is fine
    assert isinstance(msg.data, array.array) and bytes(msg.data) == labels[:, ::-1].tobytes()
    labels[0, 0] = 99
    assert msg.data[3] == 0  # the message owns its copy


def test_compressed_round_trip_png_and_jpeg():
    rgb = RNG.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
    msg = numpy_to_compressed(rgb, 'png')
    assert isinstance(msg, CompressedImage) and 'png' in msg.format
    image, order = compressed_to_network_input(msg)
    assert order == 'bgr' and np.array_equal(to_rgb(image, order), rgb)
    smooth = cv2.GaussianBlur(rgb, (7, 7), 3)
    image, order = compressed_to_network_input(numpy_to_compressed(smooth, 'jpeg', quality=95))
    assert image.shape == smooth.shape
    assert np.abs(to_rgb(image, order).astype(int) - smooth).mean() < 4


@pytest.mark.parametrize('change, message', [
    (dict(data=array.array('B')), 'empty'),
    (dict(height=0), 'empty'),
    (dict(step=20), 'shorter than a row'),
    (dict(height=4), 'expected step \\* height'),
    (dict(encoding='yuv422'), "unsupported image encoding 'yuv422'"),
])
def test_bad_images_raise_clear_errors(change, message):
    msg = numpy_to_image(_pixels('rgb8'), 'rgb8')  # 5 x 7 x 3, step 21
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(ImageConversionError, match=message):
        image_to_network_input(msg)


def test_bad_compressed_and_bad_arrays():
    with pytest.raises(ImageConversionError, match='empty compressed'):
        compressed_to_network_input(CompressedImage(format='jpeg'))
    corrupt = CompressedImage(format='jpeg', data=array.array('B', b'\xff\xd8not a jpeg' * 4))
    with pytest.raises(ImageConversionError, match='cannot decode'):
        compressed_to_network_input(corrupt)
    with pytest.raises(ImageConversionError, match='unsupported'):
        numpy_to_image(np.zeros((2, 2), np.uint8), 'yuv422')
    with pytest.raises(ImageConversionError, match='needs a uint8'):
        numpy_to_image(np.zeros((2, 2), np.float32), 'mono8')
    with pytest.raises(ImageConversionError, match='shape'):
        numpy_to_image(np.zeros((2, 2, 3), np.uint8), 'mono8')
    with pytest.raises(ImageConversionError, match='format'):
        numpy_to_compressed(np.zeros((2, 2, 3), np.uint8), 'bmp')


def test_image_size_read_from_png_and_jpeg_headers():
    from bisenet_ros.image_conversion import compressed_image_size

    image = RNG.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    assert compressed_image_size(numpy_to_compressed(image, 'png').data) == (53, 37)
    assert compressed_image_size(numpy_to_compressed(image, 'jpeg').data) == (53, 37)
    ok, progressive = cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert b'\xff\xc2' in progressive.tobytes()  # SOF2, not SOF0
    assert compressed_image_size(progressive.tobytes()) == (53, 37)
    # A hand-written PNG start: signature, IHDR length, 'IHDR', width 6000, height 6000.
    png_header = (b'\x89PNG\r\n\x1a\n' + (13).to_bytes(4, 'big') + b'IHDR'
                  + (6000).to_bytes(4, 'big') + (6000).to_bytes(4, 'big'))
    assert compressed_image_size(png_header) == (6000, 6000)
    for junk in (b'', b'not an image at all', b'\xff\xd8\xff\xe0\x00\x10JFIF', png_header[:20]):
        assert compressed_image_size(junk) is None


def test_pixel_cap_check():
    from bisenet_ros.image_conversion import check_image_pixels

    small = numpy_to_image(np.zeros((10, 20, 3), np.uint8), 'rgb8')
    check_image_pixels(small, 200)   # 200 pixels: at the cap is fine
    check_image_pixels(small, 0)     # 0 = no limit
    with pytest.raises(ImageConversionError, match=r'20x10 image .* max_image_pixels=199'):
        check_image_pixels(small, 199)
    png = numpy_to_compressed(np.zeros((10, 20, 3), np.uint8), 'png')
    with pytest.raises(ImageConversionError, match='20x10'):
        check_image_pixels(png, 199)


def test_decoder_errors_are_conversion_errors():
    # A jpeg whose header claims 65500 x 65500: OpenCV refuses it with cv2.error, which used
    # to escape as "inference failed: OpenCV ..." instead of bad input.
    data = bytearray(numpy_to_compressed(np.zeros((8, 8, 3), np.uint8), 'jpeg').data)
    sof = data.index(b'\xff\xc0')
    data[sof + 5:sof + 9] = (65500).to_bytes(2, 'big') * 2
    with pytest.raises(ImageConversionError, match='cannot decode'):
        compressed_to_network_input(CompressedImage(format='jpeg', data=bytes(data)))


def test_labels_as_lossless_png():
    from bisenet_ros.image_conversion import labels_to_compressed

    labels = np.zeros((72, 100), np.uint8)
    labels[10:30, 5:50] = 3
    labels[40:, :] = 10
    labels[0, 0], labels[71, 99] = 255, 7  # the ignore id and a lone pixel survive too
    msg = labels_to_compressed(labels)
    assert msg.format == 'mono8; png compressed'
    decoded = cv2.imdecode(np.frombuffer(msg.data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded.dtype == np.uint8 and np.array_equal(decoded, labels)
    assert len(msg.data) < labels.size / 10  # a mask compresses far below 1 byte/pixel
    with pytest.raises(ImageConversionError, match='uint8 H x W'):
        labels_to_compressed(np.zeros((4, 4, 3), np.uint8))


def _tiff_claiming(width, height):
    """A real 8x8 TIFF from cv2 whose ImageWidth/ImageLength tags are patched to claim more."""
    ok, encoded = cv2.imencode('.tiff', np.zeros((8, 8, 3), np.uint8))
    data = bytearray(encoded.tobytes())
    assert ok and data[:4] == b'II*\x00'  # little-endian TIFF
    ifd = int.from_bytes(data[4:8], 'little')
    for entry in range(int.from_bytes(data[ifd:ifd + 2], 'little')):
        at = ifd + 2 + 12 * entry
        tag = int.from_bytes(data[at:at + 2], 'little')
        if tag in (256, 257):  # ImageWidth, ImageLength (SHORT or LONG: the value's first bytes)
            data[at + 8:at + 10] = (width if tag == 256 else height).to_bytes(2, 'little')
    return bytes(data)


def _encoded(ext):
    ok, encoded = cv2.imencode(ext, RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    assert ok
    return encoded.tobytes()


@pytest.mark.parametrize('data, named', [
    (lambda: _encoded('.tiff'), 'TIFF data'),
    (lambda: _tiff_claiming(9000, 9000), 'TIFF data'),
    (lambda: _encoded('.bmp'), 'BMP data'),
    (lambda: _encoded('.webp'), 'WebP data'),
    (lambda: b'\x00\x01\x02\x03 anything', 'not jpeg or png data .it starts with 00 01 02 03'),
])
def test_only_jpeg_and_png_are_decoded_whatever_the_format_says(data, named, monkeypatch):
    """OpenCV decodes TIFF, WebP, BMP ... of any size; the pixel cap reads jpeg/png headers only,
    so anything else is refused before decoding, with or without a cap."""
    from bisenet_ros.image_conversion import check_image_pixels

    payload = data()
    decoded = []
    real_imdecode = cv2.imdecode
    monkeypatch.setattr(cv2, 'imdecode', lambda *a: decoded.append(1) or real_imdecode(*a))
    for fmt in ('png', 'jpeg', 'rgb8; jpeg compressed bgr8', 'tiff'):
        msg = CompressedImage(format=fmt, data=array.array('B', payload))
        with pytest.raises(ImageConversionError, match=f'{named}.*only jpeg and png are decoded'):
            compressed_to_network_input(msg)
        with pytest.raises(ImageConversionError, match=f'{named}.*only jpeg and png are decoded'):
            check_image_pixels(msg, 10**6)
    assert not decoded
    # jpeg and png are told by their bytes, not by the format string.
    rgb = RNG.integers(0, 256, (6, 9, 3), dtype=np.uint8)
    png = numpy_to_compressed(rgb, 'png')
    png.format = 'tiff'
    check_image_pixels(png, 54)
    image, order = compressed_to_network_input(png)
    assert np.array_equal(to_rgb(image, order), rgb) and decoded == [1]


def test_a_jpeg_header_without_a_size_is_refused_under_a_cap():
    """libjpeg skips junk between segments: so does the size reader (else a frame header after
    junk would pass the cap unread); a jpeg whose size cannot be read is not decoded."""
    from bisenet_ros.image_conversion import check_image_pixels, compressed_image_size

    data = bytes(numpy_to_compressed(np.zeros((8, 8, 3), np.uint8), 'jpeg').data)
    sof = data.index(b'\xff\xc0')
    junk = data[:sof] + b'junk' * 1000 + data[sof:]
    assert compressed_image_size(junk) == (8, 8)
    no_frame = CompressedImage(format='jpeg', data=array.array('B', data[:sof]))
    with pytest.raises(ImageConversionError, match='no image size in its jpeg header'):
        check_image_pixels(no_frame, 10**6)
