"""Bag conversion and reading: round trips, other people's bags, clear errors."""
import re
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


# ---------------------------------------------------------------------- one decoder
# What a camera may send: the node's encodings and some it does not take.
CANDIDATE_ENCODINGS = ('rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', 'mono16', '8UC1', '8UC3',
                       '16UC1', 'rgb16', 'bgr16', 'rgba16', '8UC4', '16UC3', '32FC1', 'yuv422',
                       'bayer_rggb8', 'nv21')
_LAYOUT = {'rgb8': (3, np.uint8), 'bgr8': (3, np.uint8), 'rgba8': (4, np.uint8),
           'bgra8': (4, np.uint8), 'mono8': (1, np.uint8), 'mono16': (1, np.uint16),
           '8UC1': (1, np.uint8), '8UC3': (3, np.uint8), '16UC1': (1, np.uint16)}


def _camera_pixels(encoding, rng):
    channels, dtype = _LAYOUT.get(encoding, (3, np.uint8))
    shape = (6, 5) if channels == 1 else (6, 5, channels)
    return rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)


def _expected_rgb(encoding, pixels):
    """By hand: channel order from the encoding's name, alpha dropped, 16 bits as the high byte."""
    if pixels.dtype == np.uint16:
        pixels = (pixels // 256).astype(np.uint8)
    if pixels.ndim == 2:
        return np.stack([pixels] * 3, axis=-1)
    rgb = pixels[..., :3]
    return rgb[..., ::-1] if encoding in ('bgr8', 'bgra8', '8UC3') else rgb


def _fields(encoding, pixels, pad=3):
    """Image fields: little-endian rows padded with `pad` junk bytes."""
    rows = pixels.astype(pixels.dtype.newbyteorder('<')).reshape(pixels.shape[0], -1)
    rows = rows.view(np.uint8)
    data = np.hstack([rows, np.full((rows.shape[0], pad), 0xAB, np.uint8)]).reshape(-1)
    return dict(height=pixels.shape[0], width=pixels.shape[1], encoding=encoding,
                is_bigendian=0, step=rows.shape[1] + pad, data=data)


def test_the_bag_reader_takes_every_encoding_the_node_takes(tmp_path):
    """Both sets, found by trying each candidate, are equal (and the node's table); the bag
    reader's RGB is the hand-made one."""
    sensor_msgs = pytest.importorskip('sensor_msgs.msg')
    from bisenet_ros.image_conversion import ENCODINGS, image_to_network_input
    from bisenet_ros.image_decoding import ImageConversionError

    rng = np.random.default_rng(5)
    pixels = {e: _camera_pixels(e, rng) for e in CANDIDATE_ENCODINGS}
    node_takes = set()
    for encoding in CANDIDATE_ENCODINGS:
        fields = _fields(encoding, pixels[encoding])
        msg = sensor_msgs.Image(**{**fields, 'data': fields['data'].tobytes()})
        try:
            view, _ = image_to_network_input(msg)
        except ImageConversionError:
            continue
        node_takes.add(encoding)
        np.testing.assert_array_equal(view, pixels[encoding])

    store = bags.typestore()
    bag = tmp_path / 'encodings'
    with Writer(bag, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        for encoding in CANDIDATE_ENCODINGS:
            conn = writer.add_connection(f'/cam/enc_{encoding}', bags.IMAGE_TYPE,
                                         typestore=store)
            msg = store.types[bags.IMAGE_TYPE](
                header=store.types['std_msgs/msg/Header'](
                    stamp=store.types['builtin_interfaces/msg/Time'](sec=1, nanosec=0),
                    frame_id='cam'), **_fields(encoding, pixels[encoding]))
            writer.write(conn, 10**9, store.serialize_cdr(msg, conn.msgtype))
    bag_takes = set()
    for encoding in CANDIDATE_ENCODINGS:
        try:
            [frame] = bags.read_frames(bag, image_topic=f'/cam/enc_{encoding}')
        except bags.BagError as exc:
            assert f"unsupported image encoding '{encoding}'" in str(exc)
            continue
        bag_takes.add(encoding)
        np.testing.assert_array_equal(frame.image, _expected_rgb(encoding, pixels[encoding]))
        assert frame.image.dtype == np.uint8 and frame.image.flags.c_contiguous
    assert bag_takes == node_takes == set(ENCODINGS)


def test_a_tiff_in_a_bag_is_refused_before_decoding(tmp_path, monkeypatch):
    ok, tiff = cv2.imencode('.tiff', np.zeros((8, 8, 3), np.uint8))
    assert ok
    store = bags.typestore()
    bag = tmp_path / 'tiff'
    with Writer(bag, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection('/cam/compressed', bags.COMPRESSED_TYPE, typestore=store)
        msg = store.types[bags.COMPRESSED_TYPE](
            header=store.types['std_msgs/msg/Header'](
                stamp=store.types['builtin_interfaces/msg/Time'](sec=1, nanosec=0),
                frame_id='cam'), format='png', data=tiff.reshape(-1))
        writer.write(conn, 10**9, store.serialize_cdr(msg, conn.msgtype))
    monkeypatch.setattr(cv2, 'imdecode', lambda *a: pytest.fail('a TIFF was decoded'))
    with pytest.raises(bags.BagError, match=r'/cam/compressed message 1000000000: .* is TIFF '
                                            'data; only jpeg and png are decoded'):
        bags.read_frames(bag)


# ---------------------------------------------------------------------- damaged bags
def _damage(bag: Path, how: str) -> None:
    meta = bag / 'metadata.yaml'
    data = next(p for p in bag.iterdir() if p.suffix in ('.mcap', '.db3'))
    if how == 'binary metadata':
        meta.write_bytes(b'\x00\xff\xfe{{ garbage')
    elif how == 'not yaml':
        meta.write_text('rosbag2_bagfile_information: [unclosed\n')
    elif how == 'plain text':
        meta.write_text('hello world\n')
    elif how == 'empty metadata':
        meta.write_text('')
    elif how == 'no file list':
        meta.write_text(meta.read_text().replace('relative_file_paths', 'file_paths'))
    elif how == 'newer version':
        meta.write_text(meta.read_text().replace('version: 8', 'version: 99'))
    elif how == 'truncated data':
        data.write_bytes(data.read_bytes()[:data.stat().st_size // 2])
    elif how == 'garbage data':
        data.write_bytes(b'garbage ' * 100)
    elif how == 'no data file':
        data.unlink()


@pytest.mark.parametrize('storage, how, reason', [
    ('mcap', 'binary metadata', r'metadata.yaml: not a text file \(byte 1\)'),
    ('mcap', 'not yaml', r'metadata.yaml: not valid YAML \(.* at line 2\)'),
    ('mcap', 'plain text', 'metadata.yaml: no rosbag2_bagfile_information section'),
    ('mcap', 'empty metadata', 'metadata.yaml: no rosbag2_bagfile_information section'),
    ('mcap', 'no file list', 'metadata.yaml: relative_file_paths must be a list, is missing'),
    ('mcap', 'newer version', 'metadata.yaml: metadata version 99 is newer than this reader'),
    ('mcap', 'truncated data', r'data file bag.mcap: it ends early \(truncated'),
    ('mcap', 'garbage data', 'data file bag.mcap: not an MCAP file'),
    ('mcap', 'no data file', 'data file bag.mcap named in metadata.yaml is missing'),
    ('sqlite3', 'truncated data', 'data file bag.db3: the SQLite database is corrupt'),
    ('sqlite3', 'garbage data', 'data file bag.db3: not an SQLite database'),
])
def test_a_damaged_bag_is_one_plain_line(drive, tmp_path, capsys, storage, how, reason):
    """Not rosbags' internals ('string indices must be integers', a UnicodeDecodeError,
    'File end magic is invalid'): one line naming the file and what is wrong."""
    bag = bags.convert_drive(drive, tmp_path / 'bag', storage=storage, progress=False)
    _damage(bag, how)
    for read in (bags.bag_info, bags.read_frames):
        with pytest.raises(bags.BagError) as error:
            read(bag)
        message = str(error.value)
        assert str(bag) in message and '\n' not in message
        assert re.search(reason, message), message
    assert bags.main(['info', str(bag)]) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and re.search(reason, err)
