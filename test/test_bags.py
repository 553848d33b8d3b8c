"""Bag conversion and reading: round trips, other people's bags, clear errors."""
from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer

from bisenet_core.data.synthetic import write_drive
from bisenet_ros import bags

FRAMES = 5
SIZE = (128, 96)


@pytest.fixture(scope='module')
def drive(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('drive')
    write_drive(root, seed=7, num_frames=FRAMES, size=SIZE, split='test', progress=False)
    return root


def _drive_pngs(drive: Path):
    pairs = bags.drive_frames(drive, 'test')
    images = [cv2.cvtColor(cv2.imread(str(i)), cv2.COLOR_BGR2RGB) for i, _ in pairs]
    labels = [cv2.imread(str(lab), cv2.IMREAD_GRAYSCALE) for _, lab in pairs]
    return images, labels


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_round_trip_is_lossless(drive, tmp_path, storage):
    bag = bags.convert_drive(drive, tmp_path / 'bag', storage=storage, fps=5.0, progress=False)
    images, labels = _drive_pngs(drive)
    frames = bags.read_frames(bag)
    assert len(frames) == FRAMES
    for frame, image, label in zip(frames, images, labels):
        np.testing.assert_array_equal(frame.image, image)
        np.testing.assert_array_equal(frame.label, label)
    stamps = [f.stamp_ns for f in frames]
    assert np.all(np.diff(stamps) == 200_000_000)  # 5 fps
    info = bags.bag_info(bag)
    assert info['storage'] == storage
    assert info['topics'] == {bags.IMAGE_TOPIC: {'type': bags.IMAGE_TYPE, 'count': FRAMES},
                              bags.LABEL_TOPIC: {'type': bags.IMAGE_TYPE, 'count': FRAMES}}
    # Label messages carry the same header stamps as their images, and frame_id 'camera'.
    with AnyReader([bag]) as reader:
        seen = {}
        for conn, _, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            assert msg.header.frame_id == bags.FRAME_ID
            assert msg.encoding == ('rgb8' if conn.topic == bags.IMAGE_TOPIC else 'mono8')
            seen.setdefault(conn.topic, []).append(
                msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)
    assert seen[bags.IMAGE_TOPIC] == seen[bags.LABEL_TOPIC] == stamps


def test_messages_are_real_ros2_cdr(drive, tmp_path):
    """What rosbags wrote deserialises with ROS 2's own typesupport (as `ros2 bag play` does)."""
    serialization = pytest.importorskip('rclpy.serialization')
    sensor_msgs = pytest.importorskip('sensor_msgs.msg')
    bag = bags.convert_drive(drive, tmp_path / 'bag', compressed='png', progress=False)
    with AnyReader([bag]) as reader:
        for conn, _, raw in reader.messages():
            cls = (sensor_msgs.CompressedImage if conn.msgtype == bags.COMPRESSED_TYPE
                   else sensor_msgs.Image)
            msg = serialization.deserialize_message(bytes(raw), cls)
            assert msg.header.frame_id == 'camera'
            if cls is sensor_msgs.Image:
                assert (msg.width, msg.height, msg.encoding) == (*SIZE, 'mono8')
            else:
                assert 'png' in msg.format
    text = (bag / 'metadata.yaml').read_text()
    assert 'RIHS01_' in text and 'version: 8' in text


@pytest.mark.parametrize('fmt', ['png', 'jpeg'])
def test_compressed_images(drive, tmp_path, fmt):
    bag = bags.convert_drive(drive, tmp_path / 'bag', compressed=fmt, progress=False)
    assert bags.image_topics(bag)[bags.IMAGE_TOPIC] == bags.COMPRESSED_TYPE
    images, labels = _drive_pngs(drive)
    frames = bags.read_frames(bag)
    for frame, image, label in zip(frames, images, labels):
        np.testing.assert_array_equal(frame.label, label)
        error = np.abs(frame.image.astype(int) - image).mean()
        assert error == 0 if fmt == 'png' else 0 < error < 8


def _hand_made_bag(path: Path, images, stamps, topic='/front/cam/compressed') -> Path:
    """A bag 'someone else recorded': sqlite3, CompressedImage, another topic, no labels."""
    store = bags.typestore()
    Time = store.types['builtin_interfaces/msg/Time']
    Header = store.types['std_msgs/msg/Header']
    Compressed = store.types[bags.COMPRESSED_TYPE]
    with Writer(path, version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
        conn = writer.add_connection(topic, bags.COMPRESSED_TYPE, typestore=store)
        other = writer.add_connection('/front/cam/camera_info_like', 'std_msgs/msg/String',
                                      typestore=store)
        for image, stamp in zip(images, stamps):
            ok, png = cv2.imencode('.png', cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            assert ok
            msg = Compressed(header=Header(stamp=Time(sec=stamp // 10**9, nanosec=stamp % 10**9),
                                           frame_id='front'), format='png', data=png.reshape(-1))
            # Bag time lags the header stamp, as in a real recording.
            writer.write(conn, stamp + 3_000_000, store.serialize_cdr(msg, conn.msgtype))
            note = store.types['std_msgs/msg/String'](data='x')
            writer.write(other, stamp, store.serialize_cdr(note, other.msgtype))
    return path


@pytest.mark.parametrize('key', ['stamp', 'index'])
def test_someone_elses_bag_with_label_folder(drive, tmp_path, key):
    images, labels = _drive_pngs(drive)
    stamps = [1_650_000_000_123_000_000 + i * 33_333_333 for i in range(FRAMES)]
    bag = _hand_made_bag(tmp_path / 'theirs', images, stamps)
    gt = tmp_path / 'gt'
    gt.mkdir()
    # Ground truth for every frame but the second.
    for i, label in enumerate(labels):
        if i != 1:
            name = str(stamps[i]) if key == 'stamp' else f'{i:06d}'
            cv2.imwrite(str(gt / f'{name}.png'), label)
    frames = bags.read_frames(bag, labels_dir=gt)  # the only image topic is auto-detected
    assert [f.stamp_ns for f in frames] == stamps
    for i, frame in enumerate(frames):
        np.testing.assert_array_equal(frame.image, images[i])
        if i == 1:
            assert frame.label is None
        else:
            np.testing.assert_array_equal(frame.label, labels[i])


def test_topic_choice_and_errors(drive, tmp_path):
    bag = bags.convert_drive(drive, tmp_path / 'bag', progress=False)
    assert bags.choose_topics(bag) == (bags.IMAGE_TOPIC, bags.LABEL_TOPIC)
    with pytest.raises(bags.BagError, match="no Image/CompressedImage topic '/nope'"):
        bags.choose_topics(bag, image_topic='/nope')
    with pytest.raises(bags.BagError, match='exists already'):
        bags.convert_drive(drive, bag, progress=False)
    with pytest.raises(bags.BagError, match='not found'):
        bags.read_frames(tmp_path / 'missing')
    with pytest.raises(bags.BagError, match='no folder'):
        bags.convert_drive(drive, tmp_path / 'x', split='val', progress=False)
    # Two camera topics and no hint: the error lists both.
    images, _ = _drive_pngs(drive)
    store = bags.typestore()
    two = tmp_path / 'two'
    with Writer(two, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        for topic in ('/left/image', '/right/image'):
            conn = writer.add_connection(topic, bags.IMAGE_TYPE, typestore=store)
            msg = bags.image_message(store, images[0], 'rgb8', 10**9)
            writer.write(conn, 10**9, store.serialize_cdr(msg, conn.msgtype))
    with pytest.raises(bags.BagError, match='several camera topics.*/left/image.*/right/image'):
        bags.choose_topics(two)
    assert bags.choose_topics(two, image_topic='/right/image') == ('/right/image', None)


def test_command_line(drive, tmp_path, capsys):
    out = tmp_path / 'cli_bag'
    assert bags.main(['convert', '--drive', str(drive), '--out', str(out), '--storage',
                      'sqlite3', '--fps', '2', '--compressed', 'jpeg']) == 0
    assert bags.main(['info', str(out)]) == 0
    text = capsys.readouterr().out
    assert 'sqlite3' in text and 'sensor_msgs/msg/CompressedImage' in text
    assert 'duration: 2.000 s' in text  # 5 frames at 2 fps
    assert bags.main(['info', str(tmp_path / 'nothing')]) == 2
    assert 'not found' in capsys.readouterr().err


def _raw_bag(path: Path, images, stamps) -> Path:
    """rgb8 Images whose header stamps and bag times are `stamps` (the first may be 0)."""
    store = bags.typestore()
    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection('/cam/image_raw', bags.IMAGE_TYPE, typestore=store)
        for image, stamp in zip(images, stamps):
            msg = bags.image_message(store, image, 'rgb8', stamp)
            writer.write(conn, stamp, store.serialize_cdr(msg, conn.msgtype))
    return path


@pytest.mark.parametrize('naming', ['index', 'stamp'])
def test_labels_key_auto_when_the_first_stamp_is_zero(drive, tmp_path, naming):
    """Stamps 0, 0.1 s, 0.2 s ...: 000000.png is frame 0 both ways, but only one naming
    labels every frame; auto must find it, not stop at the first coincidence."""
    images, labels = _drive_pngs(drive)
    stamps = [i * 100_000_000 for i in range(FRAMES)]
    bag = _raw_bag(tmp_path / 'from_zero', images, stamps)
    gt = tmp_path / 'gt'
    gt.mkdir()
    for i, label in enumerate(labels):
        name = f'{i:06d}' if naming == 'index' else f'{stamps[i]:06d}'
        cv2.imwrite(str(gt / f'{name}.png'), label)
    frames = bags.read_frames(bag, labels_dir=gt)
    assert [f.stamp_ns for f in frames] == stamps
    for frame, label in zip(frames, labels):
        assert frame.label is not None, f'frame {frame.index} lost its ground truth'
        np.testing.assert_array_equal(frame.label, label)


def test_a_labels_folder_that_names_no_frame_is_an_error(drive, tmp_path):
    images, labels = _drive_pngs(drive)
    bag = _raw_bag(tmp_path / 'bag', images, [10**18 + i * 10**8 for i in range(FRAMES)])
    gt = tmp_path / 'gt'
    gt.mkdir()
    cv2.imwrite(str(gt / '123456789.png'), labels[0])  # neither a stamp nor an index here
    with pytest.raises(bags.BagError, match='none of its 1 PNGs .*123456789.png'):
        bags.read_frames(bag, labels_dir=gt, labels_key='stamp')
    with pytest.raises(bags.BagError, match='names one of the 5 frames'):
        bags.read_frames(bag, labels_dir=gt)
