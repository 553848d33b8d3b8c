"""Model files that must be refused before they run: code inside, a graph its spec does not
describe, nothing there. One file check serves .pt and .onnx alike."""
import json
import os

import pytest
import torch

from bisenet_core.export import export_onnx
from bisenet_core.onnx_metadata import SPEC_KEY, read_onnx_spec
from bisenet_core.inference import Segmenter
from bisenet_core.model_source import read_model_source, read_spec
from bisenet_core.modelfile import ModelFileError, load_model, read_model_file

onnx = pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')


class _Payload:
    """Pickles to a call of os.system: what a hostile 'model' would carry."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_a_file_carrying_code_is_refused_and_says_why(tmp_path):
    ran = tmp_path / 'payload_ran'
    evil = tmp_path / 'evil.pt'
    torch.save({'format': 'bisenet-ros-model', 'version': 1, 'spec': {},
                'state_dict': {'w': _Payload(f'touch {ran}')}}, evil)
    for load in (read_model_file, lambda p: Segmenter(p, backend='torch', device='cpu')):
        with pytest.raises(ModelFileError) as info:
            load(evil)
        message = str(info.value)
        assert message.startswith(f'model file {evil}: not a plain weights file')
        assert 'refused for safety' in message and 'system' in message  # what it would call
        assert 'truncated' not in message and 'corrupt' not in message and '\n' not in message
    assert not ran.exists()


def test_a_whole_pickled_module_is_not_a_weights_file(tmp_path):
    pickled = tmp_path / 'whole_model.pt'
    torch.save(torch.nn.Conv2d(3, 4, 1), pickled)
    with pytest.raises(ModelFileError, match=r'not a plain weights file \(it imports '
                                             r'torch\.nn\.modules\.conv\.Conv2d\)'):
        read_model_file(pickled)


def test_one_check_for_missing_folder_and_empty_files(tmp_path):
    empty_pt, empty_onnx = tmp_path / 'empty.pt', tmp_path / 'empty.onnx'
    empty_pt.write_bytes(b'')
    empty_onnx.write_bytes(b'')
    cases = [(read_model_file, tmp_path / 'missing.pt', 'model file {}: not found'),
             (read_model_file, tmp_path, 'model file {}: is a folder, not a file'),
             (read_model_file, empty_pt, 'model file {}: empty file'),
             (read_onnx_spec, tmp_path / 'missing.onnx', 'ONNX file {}: not found'),
             (read_onnx_spec, tmp_path, 'ONNX file {}: is a folder, not a file'),
             (read_onnx_spec, empty_onnx, 'ONNX file {}: empty file')]
    for read, path, message in cases:
        with pytest.raises(ModelFileError) as info:
            read(path)
        assert str(info.value) == message.format(path)


def test_onnx_metadata_must_match_the_graph_classes(tiny_model_file, tmp_path):
    """An 11-class graph whose metadata lists 5 classes: label ids 5..10 would have no name
    and no colour, so the file is refused when it is read."""
    model, spec = load_model(tiny_model_file)
    assert spec.num_classes == 11
    path = export_onnx(model, spec, tmp_path / 'tiny.onnx', input_size=(64, 64))
    proto = onnx.load(str(path))
    five = spec.replace(class_names=spec.class_names[:5], palette=spec.palette[:5])
    for prop in proto.metadata_props:
        if prop.key == SPEC_KEY:
            prop.value = json.dumps(five.to_dict())
    lying = tmp_path / 'lying.onnx'
    onnx.save(proto, str(lying))
    expected = (f"ONNX file {lying}: output 'logits' has 11 classes but its 'bisenet_spec' "
                'metadata lists 5')
    with pytest.raises(ModelFileError, match='^' + expected.replace('.', r'\.')):
        read_onnx_spec(lying)
    with pytest.raises(ModelFileError, match='11 classes but'):
        Segmenter(lying, backend='onnxruntime', device='cpu')
    assert read_onnx_spec(path).num_classes == 11  # the honest file still loads


def test_one_reader_for_pt_and_onnx_paths(tiny_model_file, tmp_path):
    """read_model_source tells the two formats apart by suffix and reads each once; the
    Segmenter reports a folder as a folder, not as missing."""
    model, spec = load_model(tiny_model_file)
    onnx_path = export_onnx(model, spec, tmp_path / 'TINY.ONNX', input_size=(64, 64))
    pt = read_model_source(tiny_model_file)
    assert not pt.is_onnx and pt.onnx_info is None
    assert pt.spec.num_classes == 11 and pt.spec.input_size == (128, 96)  # conftest's model
    assert set(pt.state) == set(model.state_dict())
    exported = read_model_source(onnx_path)
    assert exported.is_onnx and exported.state is None
    assert exported.onnx_info['output'] == 'logits' and exported.onnx_info['precision'] == 'fp32'
    assert read_spec(onnx_path) == read_spec(tiny_model_file) == spec
    with pytest.raises(ModelFileError) as info:
        Segmenter(tmp_path, backend='torch', device='cpu')
    assert str(info.value) == f'model file {tmp_path}: is a folder, not a file'
    with pytest.raises(ModelFileError) as info:
        read_spec(tmp_path / 'missing.onnx')
    assert str(info.value) == f'ONNX file {tmp_path / "missing.onnx"}: not found'
