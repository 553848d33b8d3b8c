"""Class lists and colour palettes of the datasets we train on: the one place they are written.

Each entry is (name, (r, g, b)). Training, export, the node and evaluation all read these
through a ModelSpec, never from a copy.
"""
from __future__ import annotations

IGNORE_INDEX = 255

# CamVid, the common 11-class set (SegNet's layout); void -> IGNORE_INDEX.
CAMVID = (
    ('sky', (128, 128, 128)),
    ('building', (128, 0, 0)),
    ('pole', (192, 192, 128)),
    ('road', (128, 64, 128)),
    ('sidewalk', (0, 0, 192)),
    ('tree', (128, 128, 0)),
    ('sign_symbol', (192, 128, 128)),
    ('fence', (64, 64, 128)),
    ('car', (64, 0, 128)),
    ('pedestrian', (64, 64, 0)),
    ('bicyclist', (0, 128, 192)),
)

# Cityscapes, the 19 training classes (train ids 0..18).
CITYSCAPES = (
    ('road', (128, 64, 128)),
    ('sidewalk', (244, 35, 232)),
    ('building', (70, 70, 70)),
    ('wall', (102, 102, 156)),
    ('fence', (190, 153, 153)),
    ('pole', (153, 153, 153)),
    ('traffic_light', (250, 170, 30)),
    ('traffic_sign', (220, 220, 0)),
    ('vegetation', (107, 142, 35)),
    ('terrain', (152, 251, 152)),
    ('sky', (70, 130, 180)),
    ('person', (220, 20, 60)),
    ('rider', (255, 0, 0)),
    ('car', (0, 0, 142)),
    ('truck', (0, 0, 70)),
    ('bus', (0, 60, 100)),
    ('train', (0, 80, 100)),
    ('motorcycle', (0, 0, 230)),
    ('bicycle', (119, 11, 32)),
)


def generated_palette(num_classes: int) -> tuple[tuple[int, int, int], ...]:
    """A deterministic, well-spread palette (PASCAL VOC bit-interleaving) for any class count."""
    palette = []
    for label in range(num_classes):
        r = g = b = 0
        c = label
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette.append((r, g, b))
    return tuple(palette)


DATASETS = {
    'camvid': CAMVID,
    'cityscapes': CITYSCAPES,
}
