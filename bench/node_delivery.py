"""Frame delivery across processes, as deployed: `python -m bench.bench_node --cross-process`.

A camera publisher runs in its own process (bgr8 frames at a fixed rate, best-effort or
reliable), the node is started with `ros2 launch bisenet_ros segment.launch.py` and the
shipped config, and this process watches the node's ~/label and /diagnostics. Per stream:

- sent: frames the camera published;
- reached: frames that reached the node's subscription (its frames_in);
- lost: frames the middleware reported lost (the subscription's message-lost event);
- missed: frames the node counted as never arrived (gaps in the publisher's sequence numbers:
  what DDS reported lost plus what it dropped silently, e.g. a reliable camera's history
  overwriting frames the transport had not delivered yet);
- unaccounted: sent - reached - max(lost, missed), frames that vanished without a trace
  (the target is 0; the last frames of a stream can only show here: no later frame reveals
  the gap);
- labels: masks published (the node drops old frames when inference is slower than the
  camera: newest frame wins), end-to-end p50/p99 (camera stamp -> label received here);
- node CPU: the node process's CPU time over the stream, in % of one core.

Camera set-up (--camera-env): `shipped` gives the camera process the same Fast DDS profile
as the node (config/fastdds.xml, as `source scripts/ros_env.sh` does), `default` gives it
Fast DDS's defaults (a driver started from a plain shell). --baseline runs the node as it
shipped before (best-effort input, no profile) to compare.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from bisenet_ros.launched_node import LaunchedNode
from bisenet_ros.paths import REPO_ROOT
from bisenet_ros.ros_env import fresh_domain_id, ros_child_env

NAMESPACE = '/bench'
CAMERA_TOPIC = '/bench/camera/image_raw'
LABEL_TOPIC = f'{NAMESPACE}/segment_node/label'
PROFILE_ENV = 'FASTDDS_DEFAULT_PROFILES_FILE'
SHIPPED_PROFILE = REPO_ROOT / 'config' / 'fastdds.xml'
CAMERA_ENVS = ('default', 'shipped')
PUBLISHER_QOS = ('reliable', 'best_effort')
MATCH_TIMEOUT_S = 60.0
SETTLE_S = 2.5  # after a stream: > 2 diagnostics periods, so the counters are current


# ----------------------------------------------------------------------------- camera process
def camera_main(argv: list[str]) -> int:
    """`python -m bench.node_delivery WxH RATE SECONDS QOS [TOPIC]`: publish, print a report.

    bgr8 frames on TOPIC (default CAMERA_TOPIC); the report is {"sent": n, "start_ns": the
    first frame's stamp} (JSON).

    Its own module entry point: the camera process imports no torch.
    """
    import array

    import rclpy
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    size, rate, seconds, qos_name, *rest = argv
    topic = rest[0] if rest else CAMERA_TOPIC
    width, height = (int(v) for v in size.split('x'))
    rate, seconds = float(rate), float(seconds)
    rclpy.init()
    node = rclpy.create_node('bench_camera_' + topic.strip('/').replace('/', '_'))
    # What camera drivers use: sensor-data style (keep last, small depth), either reliability.
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5,
                     reliability=ReliabilityPolicy.RELIABLE if qos_name == 'reliable'
                     else ReliabilityPolicy.BEST_EFFORT)
    publisher = node.create_publisher(Image, topic, qos)
    msg = Image(width=width, height=height, encoding='bgr8', step=3 * width)
    pixels = np.random.default_rng(0).integers(0, 256, height * width * 3, dtype=np.uint8)
    msg.data = array.array('B', pixels.tobytes())
    msg.header.frame_id = 'bench_camera'
    deadline = time.monotonic() + MATCH_TIMEOUT_S
    while not publisher.get_subscription_count():
        if time.monotonic() > deadline:
            print(json.dumps({'sent': 0, 'error': 'no subscriber matched'}), flush=True)
            return 1
        time.sleep(0.05)
    time.sleep(1.0)  # discovery is two-sided: let the node's reader see this writer too
    count = int(round(rate * seconds))
    start = time.monotonic()
    start_ns = node.get_clock().now().nanoseconds
    for index in range(count):
        msg.header.stamp = node.get_clock().now().to_msg()
        publisher.publish(msg)
        delay = start + (index + 1) / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    time.sleep(1.0)  # a reliable writer may still be repairing the last frames
    print(json.dumps({'sent': count, 'start_ns': start_ns}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


# ----------------------------------------------------------------------------- the node
def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process has used so far."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def header_stamp_ns(serialized: bytes) -> int:
    """The header stamp of a serialized (CDR) Image message, without deserializing its pixels.

    CDR starts with a 4-byte encapsulation header (byte 1: 1 = little endian), then the
    message's first field, std_msgs/Header, whose stamp is int32 sec, uint32 nanosec.
    """
    order = 'little' if serialized[1] & 1 else 'big'
    sec = int.from_bytes(serialized[4:8], order, signed=True)
    return sec * 10**9 + int.from_bytes(serialized[8:12], order)


class Monitor:
    """This process's participant: the node's labels (arrival - stamp) and its diagnostics.

    Args:
        domain_id: the ROS domain.
        label_topics: label topics to time (default: the single node's LABEL_TOPIC);
            `latencies_ms` is the first one's list, `by_topic` has every topic's.
    """

    def __init__(self, domain_id: int, label_topics: tuple[str, ...] = (LABEL_TOPIC,)):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node('bench_monitor', context=self.context)
        self.by_topic: dict[str, list[float]] = {topic: [] for topic in label_topics}
        self.stamps_ns: dict[str, list[int]] = {topic: [] for topic in label_topics}
        self.latencies_ms = self.by_topic[label_topics[0]]
        self.counters: dict[str, int] = {}
        self.lock = threading.Lock()
        for topic in label_topics:
            # raw: only the stamp is read, so label floods from many cameras cost this
            # process next to nothing (it shares the CPU with the node under test).
            self.node.create_subscription(
                Image, topic, lambda data, topic=topic: self._on_label(topic, data),
                QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE), raw=True)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _on_label(self, topic: str, data: bytes) -> None:
        now = self.node.get_clock().now().nanoseconds
        stamp = header_stamp_ns(data)
        with self.lock:
            self.by_topic[topic].append((now - stamp) / 1e6)
            self.stamps_ns[topic].append(stamp)

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name.startswith(f'{NAMESPACE}/segment_node'):
                values = {kv.key: kv.value for kv in status.values}
                with self.lock:
                    self.counters = {key: int(values[key]) for key in
                                     ('frames_in', 'frames_lost', 'frames_missed',
                                      'frames_dropped', 'errors')}

    def snapshot(self) -> tuple[dict[str, int], int]:
        with self.lock:
            return dict(self.counters), len(self.latencies_ms)

    def wait_for_diagnostics(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.snapshot()[0]:
            if time.monotonic() > deadline:
                raise RuntimeError('no diagnostics from the node')
            time.sleep(0.2)

    def close(self) -> None:
        self.executor.shutdown()
        self.thread.join(5)
        self.node.destroy_node()
        self.context.try_shutdown()


# ----------------------------------------------------------------------------- one run
def run_streams(streams, rate: float, seconds: float, baseline: bool = False,
                log_dir: Path | None = None, progress=print,
                launch_args: tuple[str, ...] = ()) -> list:
    """Launch the node once, then one camera process per stream; rows of dicts.

    Args:
        streams: (width, height, publisher QoS, camera env) per stream, in order.
        launch_args: more `name:=value` arguments for segment.launch.py.
    """
    domain_id = fresh_domain_id()
    node_env = ros_child_env(domain_id)
    # The launch file sets the shipped profile for the node when the variable is unset;
    # --baseline sets it empty (Fast DDS defaults) and asks for a best-effort input.
    node_env.pop(PROFILE_ENV, None)
    launch_args = list(launch_args)
    if baseline:
        node_env[PROFILE_ENV] = ''
        launch_args.append('reliability:=best_effort')
    camera_envs = {}
    for name in CAMERA_ENVS:
        camera_envs[name] = ros_child_env(domain_id)
        camera_envs[name].pop(PROFILE_ENV, None)
        if name == 'shipped':
            camera_envs[name][PROFILE_ENV] = str(SHIPPED_PROFILE)
    log_dir = Path(log_dir or Path('out') / 'bench_node')
    log_dir.mkdir(parents=True, exist_ok=True)
    monitor = Monitor(domain_id)
    node = LaunchedNode([f'image_topic:={CAMERA_TOPIC}', f'namespace:={NAMESPACE}', *launch_args],
                        node_env, log_dir / 'node.log')
    rows = []
    try:
        pid = node.wait_ready(MATCH_TIMEOUT_S * 2)
        monitor.wait_for_diagnostics()
        for width, height, qos, camera_env in streams:
            before, labels_before = monitor.snapshot()
            cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
            camera = subprocess.run(
                [sys.executable, '-m', 'bench.node_delivery', f'{width}x{height}', str(rate),
                 str(seconds), qos],
                env=camera_envs[camera_env], capture_output=True, text=True,
                timeout=seconds + MATCH_TIMEOUT_S + 60, cwd=REPO_ROOT)
            time.sleep(SETTLE_S)
            cpu = (cpu_seconds(pid) - cpu_before) / (time.monotonic() - wall_before)
            after, labels_after = monitor.snapshot()
            try:
                sent = json.loads(camera.stdout.strip().splitlines()[-1])['sent']
            except (IndexError, ValueError, KeyError):
                raise RuntimeError(f'camera process failed:\n{camera.stdout}\n'
                                   f'{camera.stderr}') from None
            with monitor.lock:
                latencies = monitor.latencies_ms[labels_before:labels_after]
            delta = {key: after[key] - before.get(key, 0) for key in after}
            row = {'image': f'{width}x{height}', 'publisher': qos, 'camera_env': camera_env,
                   'sent': sent, 'reached': delta['frames_in'], 'lost': delta['frames_lost'],
                   'missed': delta['frames_missed'],
                   'dropped': delta['frames_dropped'], 'errors': delta['errors'],
                   'labels': len(latencies), 'node_cpu_pct': 100.0 * cpu,
                   'p50_ms': float(np.percentile(latencies, 50)) if latencies else None,
                   'p99_ms': float(np.percentile(latencies, 99)) if latencies else None}
            row['unaccounted'] = sent - row['reached'] - max(row['lost'], row['missed'])
            rows.append(row)
            progress(f'{row["image"]} {qos}: {row["reached"]}/{sent} reached, '
                     f'{row["lost"]} lost, {row["missed"]} missed, '
                     f'{row["unaccounted"]} unaccounted, '
                     f'{row["labels"]} labels, node CPU {row["node_cpu_pct"]:.0f} %')
    finally:
        code = node.stop(timeout=30.0)
        monitor.close()
    if code != 0:
        raise RuntimeError(f'ros2 launch exited {code}; see {log_dir / "node.log"}')
    return rows


def markdown(rows: list[dict]) -> str:
    def ms(value):
        return '-' if value is None else f'{value:.0f}'
    lines = ['| image | camera QoS | camera profile | sent | reached node | DDS lost | node missed '
             '| unaccounted | delivered | masks out | end-to-end p50 / p99 ms | node CPU |',
             '| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |']
    for r in rows:
        delivered = 100.0 * r['reached'] / r['sent'] if r['sent'] else float('nan')
        lines.append(f"| {r['image']} bgr8 | {r['publisher'].replace('_', '-')} | "
                     f"{r['camera_env']} | {r['sent']} | "
                     f"{r['reached']} | {r['lost']} | {r['missed']} | {r['unaccounted']} | "
                     f"{delivered:.1f} % | "
                     f"{r['labels']} | {ms(r['p50_ms'])} / {ms(r['p99_ms'])} | "
                     f"{r['node_cpu_pct']:.0f} % |")
    return '\n'.join(lines)


if __name__ == '__main__':
    sys.exit(camera_main(sys.argv[1:]))
