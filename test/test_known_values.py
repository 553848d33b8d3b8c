"""Normalisation and channel order against values worked out by hand.

ImageNet statistics, RGB order: mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225); a
channel value v becomes (v / 255 - mean) / std. By hand:
    v = 255  R (1 - 0.485) / 0.229 = 2.248908, G 0.544 / 0.224 = 2.428571, B 0.594 / 0.225 = 2.64
    v = 0    R -0.485 / 0.229 = -2.117904, G -0.456 / 0.224 = -2.035714,
             B -0.406 / 0.225 = -1.804444
    v = 128  R (0.501961 - 0.485) / 0.229 = 0.074065, G 0.205182, B 0.426492
"""
import numpy as np
import pytest
import torch

from bisenet_core.data.transforms import EvalTransform, TrainTransform
from bisenet_core.inference import Segmenter
from known_models import BLUE, CHANNEL_SPEC, GRAY, GREEN, RED, ChannelModel, InputRecorder

HIGH = (2.248908, 2.428571, 2.64)        # channel at 255
LOW = (-2.117904, -2.035714, -1.804444)  # channel at 0
MID = (0.074065, 0.205182, 0.426492)     # channel at 128
# Colour -> what the network must receive, per channel (R, G, B).
KNOWN = {
    (255, 0, 0): (HIGH[0], LOW[1], LOW[2]),
    (0, 255, 0): (LOW[0], HIGH[1], LOW[2]),
    (0, 0, 255): (LOW[0], LOW[1], HIGH[2]),
    (0, 0, 0): LOW,
    (255, 255, 255): HIGH,
    (128, 128, 128): MID,
}
TOLERANCE = 2e-6  # the hand values are rounded to 6 decimals


def _stripes(width=96, height=32, colours=tuple(KNOWN)):
    """One vertical stripe of 16 px per colour, RGB."""
    image = np.zeros((height, width, 3), np.uint8)
    for i, colour in enumerate(colours):
        image[:, 16 * i:16 * (i + 1)] = colour
    return image


def _check_known(tensor: torch.Tensor, colours=tuple(KNOWN), scale=1):
    """tensor: 3 x H x W network input of _stripes (scaled by `scale`); the middle of each
    stripe must hold the hand-computed values."""
    for i, colour in enumerate(colours):
        x = int((16 * i + 8) * scale)
        got = tensor[:, tensor.shape[1] // 2, x].double().numpy()
        np.testing.assert_allclose(got, KNOWN[colour], atol=TOLERANCE, err_msg=str(colour))


def test_training_transform_normalises_known_colours():
    image = _stripes()
    label = np.zeros(image.shape[:2], np.uint8)
    # Scale 1, no flip, crop = image: the crop is the image, only normalisation is left.
    transform = TrainTransform(crop_size=(96, 32), scales=(1.0,), flip=False, seed=0)
    x, _ = transform(image, label)
    _check_known(x)
    x, _ = EvalTransform()(image, label)
    _check_known(x)


@pytest.fixture
def recorded():
    InputRecorder.inputs.clear()
    model = InputRecorder(ChannelModel())
    seg = Segmenter.from_model(model, CHANNEL_SPEC.replace(input_size=[96, 32]),
                               backend='torch', device='cpu')
    # Construction runs the network (the Conv+BN folding check, the warm-up): not frames.
    InputRecorder.inputs.clear()
    return seg, InputRecorder.inputs


def test_segmenter_feeds_the_network_known_values(recorded):
    seg, inputs = recorded
    image = _stripes()
    seg.segment(image)
    seg.segment(np.ascontiguousarray(image[:, :, ::-1]), color_order='bgr')
    seg.segment(np.repeat(np.repeat(image, 2, axis=0), 2, axis=1))  # resized down to 96 x 32
    assert len(inputs) == 3
    for batch in inputs:
        assert tuple(batch.shape) == (1, 3, 32, 96)
        _check_known(batch[0])
    gray = np.full((32, 96), 128, np.uint8)
    for mono in (gray, gray[:, :, None]):
        seg.segment(mono)
        np.testing.assert_allclose(inputs[-1][0, :, 16, 48].double().numpy(), MID,
                                   atol=TOLERANCE)


def _halves(left, right, width=64, height=32):
    image = np.zeros((height, width, 3), np.uint8)
    image[:, :width // 2] = left
    image[:, width // 2:] = right
    return image


def _expected_halves(left_id, right_id, width=64, height=32):
    labels = np.full((height, width), right_id, np.uint8)
    labels[:, :width // 2] = left_id
    return labels


def test_segmenter_colour_order_with_a_model_that_sees_channels():
    seg = Segmenter.from_model(ChannelModel(), CHANNEL_SPEC, backend='torch', device='cpu',
                               upsample='nearest')
    red_blue = _halves((255, 0, 0), (0, 0, 255))
    as_bgr = np.ascontiguousarray(red_blue[:, :, ::-1])
    np.testing.assert_array_equal(seg.segment(red_blue).labels, _expected_halves(RED, BLUE))
    np.testing.assert_array_equal(seg.segment(as_bgr, color_order='bgr').labels,
                                  _expected_halves(RED, BLUE))
    # The same bytes read as RGB are blue | red: the model does tell the orders apart.
    np.testing.assert_array_equal(seg.segment(as_bgr).labels, _expected_halves(BLUE, RED))
    green = _halves((0, 255, 0), (0, 255, 0))
    np.testing.assert_array_equal(seg.segment(green, color_order='bgr').labels,
                                  _expected_halves(GREEN, GREEN))
    mono = np.zeros((32, 64), np.uint8)
    mono[:, :32] = 200
    mono[:, 32:] = 50
    np.testing.assert_array_equal(seg.segment(mono).labels, _expected_halves(GRAY, GRAY))
