"""Several camera topics of one bag through one multi-camera segment_node.

    streams = camera_streams(bag, ['/front/image_raw', '/left/image_raw'])
    results = run_live_cameras({s.name: frames_of[s.name] for s in streams}, model, options)

Each camera topic becomes a camera of the launched node (`cameras:=[front, left]`): the
replay publishes camera c's frames on /bisenet_replay/c/image_raw with their bag stamps and
collects /bisenet_replay/segment_node/c/label, so every camera is matched and scored on its
own (bisenet_ros.replay adds them up for the all-cameras score). Ground truth per camera: a
label topic beside its image topic (/front/labels for /front/image_raw), or given in order.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from bisenet_ros.bags import IMAGE_TYPE, LABEL_WORDS, BagFrame, choose_topics, image_topics
from bisenet_ros.camera_topics import camera_name_problem
from bisenet_ros.launched_node import LaunchedNode
from bisenet_ros.replay_live import (LAUNCH_NAMESPACE, NODE_NAME, LiveResult, ReplayClient,
                                     _publish, replay_parameters)
from bisenet_ros.replay_options import ReplayError, ReplayOptions
from bisenet_ros.ros_env import fresh_domain_env, join_domain, restore_environ
from bisenet_ros.stamp_matching import match_stamps

# After the last frame: wait for masks while they keep coming, at most this long without one.
TAIL_IDLE_S = 5.0


@dataclass(frozen=True)
class CameraStream:
    """One camera of the bag: its name in the node, its image and ground-truth topics."""

    name: str
    image_topic: str
    label_topic: str | None


def _camera_name(topic: str, index: int, taken: set[str]) -> str:
    """The camera's name from its topic (/front/image_raw -> front), else cam<index>."""
    parts = [p for p in topic.split('/') if p]
    name = parts[-2] if len(parts) >= 2 else re.sub(r'\W', '_', parts[-1] if parts else '')
    if camera_name_problem(name) or name in taken:
        name = f'cam{index}'
    return name


def _label_beside(topics: dict[str, str], image_topic: str) -> str | None:
    """The one ground-truth topic in the image topic's namespace (/front/labels), or None."""
    parent = image_topic.rpartition('/')[0]
    found = [t for t, kind in topics.items() if t != image_topic and kind == IMAGE_TYPE
             and t.rpartition('/')[0] == parent and LABEL_WORDS.search(t)]
    return found[0] if len(found) == 1 else None


def camera_streams(bag: str | os.PathLike, image_topics_: Sequence[str],
                   label_topics: Sequence[str] = ()) -> list[CameraStream]:
    """The cameras to replay: given image topics (checked), ground truth given or beside."""
    if len(set(image_topics_)) != len(image_topics_):
        raise ReplayError(f'--image-topic: a topic is given twice ({", ".join(image_topics_)})')
    if label_topics and len(label_topics) != len(image_topics_):
        raise ReplayError(f'{len(label_topics)} --label-topic for {len(image_topics_)} '
                          '--image-topic: give one per camera, in the same order, or none')
    topics = image_topics(bag)
    streams: list[CameraStream] = []
    for index, image in enumerate(image_topics_):
        given = label_topics[index] if label_topics else None
        image, label = choose_topics(bag, image, given, want_labels=False)  # checks both
        label = given or _label_beside(topics, image)
        name = _camera_name(image, index, {s.name for s in streams})
        streams.append(CameraStream(name, image, label))
    return streams


def run_live_cameras(frames: dict[str, Sequence[BagFrame]], model: Path,
                     options: ReplayOptions, params: dict | None = None,
                     frame_timeout: float = 30.0) -> dict[str, LiveResult]:
    """Launch one node with every camera, publish each camera's frames, collect its masks.

    Pacing as run_live: `options.rate` times the bag's frame rate (all cameras on one
    clock), or lockstep (None): the frames of one stamp go out together, and the next stamp
    when every camera's mask of this one arrived (or frame_timeout passed).
    """
    if options.attach:
        raise ReplayError('--attach with several cameras is not supported: the replay '
                          'launches the node with cameras:=[...] itself')
    names = list(frames)
    env = fresh_domain_env()
    saved = join_domain(env)
    domain_id = int(env['ROS_DOMAIN_ID'])
    args = [f'model:={model}', f'backend:={options.backend}', f'device:={options.device}',
            f'precision:={options.precision}', f'namespace:={LAUNCH_NAMESPACE}',
            'use_compressed:=false', f'cameras:=[{", ".join(names)}]']
    if options.input_size is not None:
        args += [f'width:={options.input_size[0]}', f'height:={options.input_size[1]}']
    launched = None
    clients: dict[str, ReplayClient] = {}
    try:
        launched = LaunchedNode(args, env, Path(options.out) / 'node.log',
                                params if params is not None else replay_parameters())
        for name in names:
            clients[name] = ReplayClient(
                domain_id, f'{LAUNCH_NAMESPACE}/{name}/image_raw',
                f'{LAUNCH_NAMESPACE}/{NODE_NAME}/{name}/label', depth=max(10, len(frames[name])),
                name=f'bisenet_replay_{name}')
        deadline = time.monotonic() + options.start_timeout
        while not all(c.matched() for c in clients.values()):
            launched.check_alive()
            if time.monotonic() > deadline:
                raise ReplayError(f'the node did not subscribe to and publish every camera\'s '
                                  f'topics within {options.start_timeout:.0f} s\nnode log:\n'
                                  f'{launched.log_tail()}')
            time.sleep(0.2)
        time.sleep(1.0)  # discovery is two-sided: let the node's readers see our writers
        pacing = ('lockstep: next stamp when every camera\'s mask arrived'
                  if options.rate is None else f"{options.rate:g}x the bag's frame rate")
        desc = (f'launched `ros2 launch {launched.target}` with cameras {", ".join(names)} '
                f'(domain {domain_id}, log {launched.log_path.name})')
        results = {n: LiveResult(desc, c.publisher.topic_name, c.subscription.topic_name,
                                 pacing) for n, c in clients.items()}
        _send(frames, clients, results, options, launched, frame_timeout)
        launched.check_alive()
        for name, client in clients.items():
            with client.arrived:
                results[name].received = [r for r in client.received if r[2] is not None]
            results[name].match = match_stamps([f.stamp_ns for f in frames[name]],
                                               [s for s, _, _ in results[name].received])
        return results
    finally:
        try:
            for client in clients.values():
                client.close()
        finally:
            if launched is not None:
                launched.stop()
            restore_environ(saved)


def _send(frames, clients, results, options, launched, frame_timeout) -> None:
    """Publish every camera's frames in stamp order, paced or in lockstep; await the tail."""
    by_stamp: dict[int, list[tuple[str, BagFrame]]] = {}
    for name, camera_frames in frames.items():
        for frame in camera_frames:
            by_stamp.setdefault(frame.stamp_ns, []).append((name, frame))
    sent = dict.fromkeys(frames, 0)
    total = sum(len(f) for f in frames.values())
    first = min(by_stamp)
    bar = tqdm(total=total, desc='live replay', unit='frame', disable=not options.progress)
    try:
        start = time.perf_counter()
        for stamp in sorted(by_stamp):
            if options.rate is not None:
                delay = start + (stamp - first) / 1e9 / options.rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            for name, frame in by_stamp[stamp]:
                results[name].publish_s[frame.index] = _publish(clients[name], frame, name)
                sent[name] += 1
            if options.rate is None:
                for name, _ in by_stamp[stamp]:
                    if not clients[name].wait_for(sent[name], frame_timeout):
                        launched.check_alive()
                        with clients[name].arrived:  # lost: keep the count in step
                            clients[name].received.append((-1, time.perf_counter(), None))
            bar.update(len(by_stamp[stamp]))
        for name, client in clients.items():
            while len(client.received) < sent[name]:
                if not client.wait_for(len(client.received) + 1, TAIL_IDLE_S):
                    break
    finally:
        bar.close()
