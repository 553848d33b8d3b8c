"""Weight and model files that cannot be used each get one plain line saying what the file is
(issue 18 item 9, issue 21 item 8): never torch's own text, which may carry terminal escape
codes or advise the unsafe weights_only=False, and never cut mid-sentence. The files are
written here; the expected words are written by hand."""
import gzip
import pickle
import zipfile

import numpy as np
import pytest
import torch

from bisenet_core.model.pretrained import WeightsFileError, read_state_dict
from bisenet_core.modelfile import ModelFileError, read_model_file


def _onnx_bytes() -> bytes:
    onnx = pytest.importorskip('onnx')
    helper = onnx.helper
    graph = helper.make_graph(
        [helper.make_node('Relu', ['x'], ['y'])], 'g',
        [helper.make_tensor_value_info('x', onnx.TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info('y', onnx.TensorProto.FLOAT, [1])])
    return helper.make_model(graph).SerializeToString()


def _write(path, content):
    if callable(content) and not isinstance(content, torch.nn.Module):
        content(path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    return path


def _truncated_zip(path):
    torch.save({'w': torch.arange(50000.0)}, path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _truncated_legacy(path):
    torch.save({'w': torch.arange(50000.0)}, path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    path.write_bytes(data[:100])


def _plain_zip(path):
    with zipfile.ZipFile(path, 'w') as archive:
        archive.writestr('notes.txt', 'hello')


class _Prints:
    """Pickles to a call of print: code a 'weights' file must never run."""

    def __reduce__(self):
        return (print, ('loaded',))


RANDOM = bytes([0x6A]) + np.random.default_rng(7).bytes(4095)  # first byte: no file format's

# (name, content, the reason after 'model file <path>: ')
CASES = [
    ('text', b'hello, I am not a model\nsecond line\n',
     "a text file, not a torch file (it starts 'hello, I am not a model')"),
    ('random', RANDOM, 'not a torch file: its first bytes (6a '),
    ('module', torch.nn.Conv2d(3, 4, 1),
     'not a plain weights file (it imports torch.nn.modules.conv.Conv2d); refused for safety: '
     'loading it could run code'),
    ('plain_pickle', lambda p: p.write_bytes(pickle.dumps({'a': 1}, protocol=4)),
     'a pickled Python object, not plain weights'),
    ('onnx', _onnx_bytes, 'an ONNX model, not a torch file'),
    ('truncated', _truncated_zip,
     'truncated or damaged: its zip archive is incomplete'),
    ('truncated_legacy', _truncated_legacy, 'truncated: its data ends early (100 bytes); copy '
     'or save it again'),
    ('lfs', b'version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 9\n',
     'a Git LFS pointer, not the weights: fetch the file with git lfs pull'),
    ('gzip', gzip.compress(b'weights'), 'a gzip or tar archive, not a torch file: unpack it'),
    ('zip', _plain_zip, 'a zip archive, not a torch file (no data.pkl inside)'),
    ('escapes', b'\x1b[1mbold\x1b[0m\n', 'not a torch file: its first bytes (1b 5b 31 6d'),
    # a pickle opcode GLOBAL (b'c') followed by bytes that name nothing
    ('global_garbage', b'c1-2\n3+4\n\x00' + RANDOM[:64],
     'not a torch file: its first bytes (63 31 2d 32 0a 33 2b 34)'),
    ('old_pickle_code', lambda p: p.write_bytes(pickle.dumps(_Prints(), protocol=0)),
     'not a plain weights file (it imports print); refused for safety'),
]


@pytest.mark.parametrize('name, content, reason', CASES, ids=[c[0] for c in CASES])
def test_each_unreadable_file_says_what_it_is(tmp_path, name, content, reason):
    if content is _onnx_bytes:
        content = _onnx_bytes()
    path = _write(tmp_path / f'{name}.pt', content)
    for read, error, prefix in (
            (read_model_file, ModelFileError, f'model file {path}: '),
            (lambda p: read_state_dict(p, 'backbone weights'), WeightsFileError,
             f'backbone weights {path}: cannot be read: ')):
        with pytest.raises(error) as info:
            read(path)
        message = str(info.value)
        assert message.startswith(prefix + reason), message
        assert '\n' not in message and '\x1b' not in message
        assert 'weights_only' not in message  # torch's advice to load unsafely is not passed on
        assert message[-1].isalnum() or message[-1] in ')?', message  # a whole sentence
        assert info.value.__cause__ is None and info.value.__context__ is None


def test_what_to_do_with_a_misnamed_onnx_file(tmp_path):
    path = _write(tmp_path / 'street.pt', _onnx_bytes())
    with pytest.raises(ModelFileError) as info:
        read_model_file(path)
    assert str(info.value) == (f'model file {path}: an ONNX model, not a torch file: name it '
                               'street.onnx to run it')


def test_a_folder_is_a_folder_not_missing(tmp_path):
    folder = tmp_path / 'weights.pt'
    folder.mkdir()
    with pytest.raises(ModelFileError) as info:
        read_model_file(folder)
    assert str(info.value) == f'model file {folder}: is a folder, not a file'
    with pytest.raises(WeightsFileError) as info:
        read_state_dict(folder, 'backbone weights')
    assert str(info.value) == f'backbone weights {folder}: is a folder, not a file'


def test_loadable_files_that_are_no_model_file_say_what_they_hold(tmp_path):
    bare = _write(tmp_path / 'bare.pt', {'conv.weight': torch.zeros(2, 3, 1, 1)})
    checkpoint = _write(tmp_path / 'last.pt', {'format': 'bisenet-ros-checkpoint',
                                               'model': {'w': torch.zeros(1)}, 'step': 3})
    for path, words in ((bare, 'it holds bare weights, without the spec'),
                        (checkpoint, 'it is a training checkpoint (to resume from)')):
        with pytest.raises(ModelFileError) as info:
            read_model_file(path)
        assert str(info.value).startswith(
            f'model file {path}: not a bisenet-ros-model file: {words}')
