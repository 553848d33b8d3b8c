"""The cameras of a segment_node and their topics: names, per-camera overrides, checks.

    cameras: []                 -> one camera: `image` (or `image/compressed`), `camera_info`
                                   in, `~/label`, `~/color`, ... out (the node before cameras)
    cameras: [front, left]      -> per camera c: `c/image_raw`, `c/camera_info` in (relative:
                                   /c/... in the root namespace), `~/c/label`, ... out
    front.image_topic: /cam0/image_raw         (per camera, optional)
    front.camera_info_topic: /cam0/info        (default: camera_info beside the image topic)

Used by the node (bisenet_ros/camera.py declare_cameras: start-up checks, one FATAL line)
and the launch file (the same name checks before anything starts); light to import.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from bisenet_ros.topic_names import topic_name_problem

# Per-camera parameters, `<camera>.<key>`: what each one sets.
CAMERA_KEYS = {'image_topic': 'input image topic (<image_topic>/compressed with use_compressed)',
               'camera_info_topic': 'CameraInfo topic; empty: camera_info beside image_topic'}
# One ROS name token: it becomes a topic level (`~/front/label`) and a parameter prefix.
_NAME = re.compile(r'[A-Za-z][A-Za-z0-9_]*')


class CameraConfigError(ValueError):
    """A camera list or camera topic the node cannot start with (one-line message)."""


@dataclass(frozen=True)
class CameraTopics:
    """Where one camera's frames come from and its outputs go.

    image: the raw image topic (`<image>/compressed` with use_compressed).
    camera_info: its CameraInfo topic.
    output_prefix: '' or '<name>/': outputs are `~/<output_prefix>label`, ...
    The defaults are the single camera of a node without `cameras`.
    """

    image: str = 'image'
    camera_info: str = 'camera_info'
    output_prefix: str = ''

    def input_topic(self, use_compressed: bool) -> str:
        return f'{self.image}/compressed' if use_compressed else self.image


def camera_info_beside(image_topic: str) -> str:
    """camera_info beside the image, as image_transport pairs them (/a/image -> /a/camera_info)."""
    parent, slash, _ = image_topic.rpartition('/')
    return f'{parent}{slash}camera_info'


def camera_name_problem(name: str) -> str | None:
    """Why `name` cannot be a camera name, or None."""
    if not name:
        return 'empty name'
    if not _NAME.fullmatch(name):
        return ('a camera name is one ROS name token: a letter, then letters, digits and '
                "'_' (it becomes the topic level ~/<name>/label)")
    return None


def check_camera_names(cameras: Sequence[str], where: str | None = None) -> None:
    """Raise CameraConfigError for an empty, invalid or repeated name (one line).

    `where` starts the message (default: "parameter cameras=[...]").
    """
    where = where or 'parameter cameras=[' + ', '.join(repr(c) for c in cameras) + ']'
    seen = set()
    for position, name in enumerate(cameras, start=1):
        problem = camera_name_problem(name)
        if problem:
            raise CameraConfigError(f'{where}: camera {position} '
                                    f'({name!r}): {problem}')
        if name in seen:
            raise CameraConfigError(f'{where}: camera {name!r} is listed '
                                    'twice (each name gets its own topics)')
        seen.add(name)


def camera_topics(cameras: Sequence[str], overrides: Mapping[str, str] | None = None,
                  node_name: str = 'segment_node') -> dict[str, CameraTopics]:
    """Camera name -> its topics, in order; {'': CameraTopics()} when `cameras` is empty.

    Args:
        cameras: camera names, in the order of the `cameras` parameter.
        overrides: per-camera parameters given, `'<camera>.<key>' -> value` (CAMERA_KEYS);
            empty values keep the defaults.
        node_name: for checking names that expand with `~`.
    Raises:
        CameraConfigError: bad names, a per-camera key that does not exist, an invalid topic.
    """
    overrides = dict(overrides or {})
    check_camera_names(cameras)
    for key in overrides:
        camera, _, what = key.partition('.')
        if camera in cameras and what not in CAMERA_KEYS:
            raise CameraConfigError(f'parameter {key}: camera {camera!r} has no parameter '
                                    f'{what!r} (per camera: {", ".join(CAMERA_KEYS)})')
    if not cameras:
        return {'': CameraTopics()}
    result = {}
    for name in cameras:
        image = overrides.get(f'{name}.image_topic') or f'{name}/image_raw'
        info = overrides.get(f'{name}.camera_info_topic') or camera_info_beside(image)
        for key, topic in (('image_topic', image), ('camera_info_topic', info)):
            problem = topic_name_problem(topic, node_name)
            if problem:
                raise CameraConfigError(f'parameter {name}.{key}={topic}: not a valid ROS '
                                        f'topic name: {problem}')
        result[name] = CameraTopics(image, info, f'{name}/')
    return result


def parse_camera_list(text: str) -> list[str]:
    """A `cameras:=` launch argument -> names: "[front, left]", "front,left" or "front left"."""
    inner = text.strip()
    if inner.startswith('[') and inner.endswith(']'):
        inner = inner[1:-1]
    if not inner.strip():
        return []
    separator = r',' if ',' in inner else r'\s+'
    return [part.strip().strip('\'"') for part in re.split(separator, inner)]
