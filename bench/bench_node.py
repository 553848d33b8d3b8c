"""Node overhead: end-to-end latency through segment_node vs the bare Segmenter call.

    python -m bench.bench_node [--sizes 640x360 1280x720] [--frames 30] [--warmup 3]
                               [--backend torch] [--model models/....pt]

For each image size, one process runs a SegmentNode (in-process, its own executor thread and
worker, reliable QoS, ~/label and ~/color published) and a client node. Frame by frame, the
same image goes (a) straight to the node's own Segmenter.segment() and (b) through ROS:
Image message published (building it is not timed) -> node converts, segments, publishes
label + colour -> client receives the label. Interleaved call by call, so a load spike on a
shared machine hits both alike. Reports p50/p99 of both and their ratio (goal: node / bare <= 1.15).

The model is the shipped one when present (run at the network size nearest the image), else
a randomly initialised Xception39 BiSeNet (speed does not depend on the weights). The network
size is the image size (the model pads 360 to 384 inside). The bench sets its
own ROS environment (loopback discovery, a private domain) before rclpy starts.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench.machine import machine_info
from bench.node_delivery import CAMERA_ENVS, PUBLISHER_QOS
from bisenet_core.spec import size_arg
from bisenet_ros.ros_env import fresh_domain_id, ros_child_env


def random_model(path: Path, input_size: tuple[int, int]) -> Path:
    import torch

    from bisenet_core.model import bisenet
    from bisenet_core.modelfile import save_model
    from bisenet_core.spec import spec_for_dataset

    torch.manual_seed(0)
    spec = spec_for_dataset('camvid', backbone='xception39', input_size=input_size)
    save_model(path, bisenet(spec.num_classes, backbone=spec.backbone).eval(), spec)
    return path


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


class Bench:
    """A SegmentNode and a client on one executor; lockstep publish -> label round trips."""

    def __init__(self, context, model: Path, backend: str, size: tuple[int, int],
                 color: bool):
        import rclpy
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.parameter import Parameter
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        from bisenet_ros.segment_node import SegmentNode

        params = {'model_path': str(model), 'backend': backend, 'device': 'cpu',
                  'input_width': size[0], 'input_height': size[1],
                  'qos_reliability': 'reliable', 'latency_budget_ms': 0.0}
        self.node = SegmentNode(context=context, namespace='/bench',
                                parameter_overrides=[Parameter(k, value=v)
                                                     for k, v in params.items()])
        self.client = rclpy.create_node('bench_client', context=context)
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        self.publisher = self.client.create_publisher(Image, '/bench/image', qos)
        self.arrived = threading.Event()
        self.client.create_subscription(Image, '/bench/segment_node/label',
                                        lambda msg: self.arrived.set(), qos)
        self.color, self.colors = color, []
        if color:  # the node builds ~/color only for a subscriber; wait for both outputs
            self.client.create_subscription(Image, '/bench/segment_node/color',
                                            self.colors.append, qos)
        self.executor = MultiThreadedExecutor(num_threads=2, context=context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.client)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not (self.publisher.get_subscription_count()
                   and self.client.count_publishers('/bench/segment_node/label')):
            if time.monotonic() > deadline:
                raise RuntimeError('the node and the bench client did not match within 30 s')
            time.sleep(0.05)

    def through_node(self, image: np.ndarray) -> float:
        """Milliseconds from publishing the Image message to the label's arrival.

        Building the message is the camera driver's work, so it is not timed.
        """
        from bisenet_ros.image_conversion import numpy_to_image

        self.arrived.clear()
        msg = numpy_to_image(image, 'rgb8')
        msg.header.stamp = self.client.get_clock().now().to_msg()
        start = time.perf_counter()
        self.publisher.publish(msg)
        if not self.arrived.wait(60):
            raise RuntimeError('no label from the node within 60 s')
        while self.color and (
                not self.colors or self.colors[-1].header.stamp != msg.header.stamp):
            time.sleep(0.0005)  # the colour mask follows the label
        return (time.perf_counter() - start) * 1e3

    def bare(self, image: np.ndarray) -> float:
        start = time.perf_counter()
        self.node.segmenter.segment(image, 'rgb')
        return (time.perf_counter() - start) * 1e3

    def close(self) -> None:
        self.executor.shutdown()
        self.thread.join(5)
        self.node.destroy_node()
        self.client.destroy_node()


def run(sizes, frames: int, warmup: int, backend: str, model: Path | None,
        color: bool = False) -> list[dict]:
    os.environ.update(ros_child_env(fresh_domain_id()))
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(os.environ['ROS_DOMAIN_ID']))
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix='bench_node_') as tmp:
            for width, height in sizes:
                net = (width, height)
                path = model or random_model(Path(tmp) / f'x39_{net[0]}x{net[1]}.pt', net)
                bench = Bench(context, path, backend, net, color)
                rng = np.random.default_rng(0)
                images = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
                          for _ in range(4)]
                node_ms, bare_ms = [], []
                try:
                    for i in range(warmup):
                        bench.bare(images[i % 4])
                        bench.through_node(images[i % 4])
                    for i in tqdm(range(frames), desc=f'{width}x{height}', unit='frame'):
                        # Alternate which goes first, so neither always runs on a warm cache.
                        pair = (bench.bare, bench.through_node)
                        for call in (pair if i % 2 == 0 else pair[::-1]):
                            (bare_ms if call == bench.bare else node_ms).append(
                                call(images[i % 4]))
                    seg = bench.node.segmenter
                    rows.append({
                        'image': f'{width}x{height}', 'network': f'{net[0]}x{net[1]}',
                        'backend': seg.backend_name, 'frames': frames,
                        'bare_p50': percentile(bare_ms, 50), 'bare_p90': percentile(bare_ms, 90),
                        'bare_p99': percentile(bare_ms, 99),
                        'node_p50': percentile(node_ms, 50), 'node_p90': percentile(node_ms, 90),
                        'node_p99': percentile(node_ms, 99),
                        # Transport stalls show up as single frames far above the rest.
                        'node_slow': int(np.sum(np.array(node_ms) > 2 * percentile(bare_ms, 50))),
                        'dropped': bench.node.frames_dropped, 'errors': bench.node.errors})
                finally:
                    bench.close()
    finally:
        context.try_shutdown()
    for row in rows:
        row['ratio_p50'] = row['node_p50'] / row['bare_p50']
        row['ratio_p99'] = row['node_p99'] / row['bare_p99']
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ['| image | network | backend | frames | bare p50/p90/p99 ms | node p50/p90/p99 ms '
             '| node/bare p50 | node/bare p99 | node frames > 2x bare p50 |',
             '| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |']
    for r in rows:
        lines.append(f"| {r['image']} | {r['network']} | {r['backend']} | {r['frames']} | "
                     f"{r['bare_p50']:.1f} / {r['bare_p90']:.1f} / {r['bare_p99']:.1f} | "
                     f"{r['node_p50']:.1f} / {r['node_p90']:.1f} / {r['node_p99']:.1f} | "
                     f"{r['ratio_p50']:.3f} | {r['ratio_p99']:.3f} | {r['node_slow']} |")
    return '\n'.join(lines)


def cross_process(args) -> int:
    from bench.node_delivery import markdown as delivery_markdown
    from bench.node_delivery import run_streams

    sizes = args.sizes or [(640, 480), (1280, 720), (1920, 1080)]
    streams = [(width, height, qos, env) for env in args.camera_env for width, height in sizes
               for qos in args.publishers]
    rows = run_streams(streams, args.rate, args.seconds, baseline=args.baseline,
                       log_dir=args.log_dir, launch_args=args.launch_arg)
    setup = ('baseline: node input best-effort, Fast DDS defaults on both sides'
             if args.baseline else 'node as shipped (launch file, config/segment.yaml)')
    print(f'\n{setup}; {args.rate:g} Hz for {args.seconds:g} s per stream')
    print(f'machine: {machine_info()}')
    print(delivery_markdown(rows))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog='python -m bench.bench_node',
        description='segment_node overhead: end-to-end latency (Image published -> '
                    'label received) vs the bare Segmenter call on the same frames, on the CPU. '
                    'With --cross-process: frame delivery from a camera in another process to '
                    'the node launched as deployed (see bench/node_delivery.py).')
    parser.add_argument('--sizes', type=size_arg, nargs='+', default=None,
                        help='image sizes WxH (default: 640x360 1280x720; with --cross-process '
                             '640x480 1280x720 1920x1080)')
    parser.add_argument('--frames', type=int, default=30, help='timed frames per size (30)')
    parser.add_argument('--warmup', type=int, default=3, help='untimed frames per size (3)')
    parser.add_argument('--backend', default='torch',
                        choices=('torch', 'onnxruntime', 'auto'),
                        help='inference backend (default: torch)')
    parser.add_argument('--model', type=Path, default=None,
                        help='model file; default: the shipped model if present, else a '
                             'random-init Xception39 BiSeNet')
    parser.add_argument('--color', action='store_true',
                        help='also subscribe to ~/color and time until it arrives (by default '
                             'only ~/label is subscribed, and the node skips the colour mask)')
    delivery = parser.add_argument_group('--cross-process (delivery as deployed)')
    delivery.add_argument('--cross-process', action='store_true',
                          help='camera publisher in its own process, node started with ros2 '
                               'launch and the shipped config; reports delivery, end-to-end '
                               'p50/p99 and the node\'s CPU use')
    delivery.add_argument('--rate', type=float, default=30.0, help='camera rate in Hz (30)')
    delivery.add_argument('--seconds', type=float, default=60.0,
                          help='seconds per stream (60)')
    delivery.add_argument('--publishers', nargs='+', choices=PUBLISHER_QOS,
                          default=list(PUBLISHER_QOS),
                          help='camera publisher reliability, one stream each (both)')
    delivery.add_argument('--camera-env', nargs='+', choices=CAMERA_ENVS,
                          default=list(CAMERA_ENVS),
                          help="the camera process's Fast DDS profile, one stream each: Fast "
                               'DDS defaults (a driver started from a plain shell) or the '
                               'shipped config/fastdds.xml (one started after source '
                               'scripts/ros_env.sh); default: both')
    delivery.add_argument('--baseline', action='store_true',
                          help='the node as it shipped before: best-effort input, no profile')
    delivery.add_argument('--launch-arg', action='append', default=[], metavar='NAME:=VALUE',
                          help='another segment.launch.py argument, e.g. '
                               'params_file:=my.yaml (repeatable)')
    delivery.add_argument('--log-dir', type=Path, default=Path('out/bench_node'),
                          help='where node.log goes (out/bench_node)')
    args = parser.parse_args(argv)
    if args.cross_process:
        if args.rate <= 0 or args.seconds <= 0:
            parser.error('--rate and --seconds must be > 0')
        return cross_process(args)
    if args.frames < 2 or args.warmup < 0:
        parser.error('--frames must be >= 2 and --warmup >= 0')
    model = args.model
    if model is None:
        from bisenet_ros.paths import default_model_path
        shipped = default_model_path()
        model = shipped if shipped.is_file() else None
    if model is not None and not model.is_file():
        parser.error(f'--model {model}: not found')
    rows = run(args.sizes or [(640, 360), (1280, 720)], args.frames, args.warmup, args.backend,
               model, args.color)
    outputs = 'label + color' if args.color else 'label'
    print(f'\nmodel: {model or "random-init xception39"}; outputs timed: {outputs}; machine: '
          f'{machine_info()}')
    print(markdown(rows))
    worst = max(r['ratio_p50'] for r in rows)
    print(f'\nnode overhead (p50 ratio, worst size): {worst:.3f} (goal <= 1.15)')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
