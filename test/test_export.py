"""ONNX export: logits/labels, fixed/dynamic sizes, fp16, spec metadata, errors, atomic write."""
import json
import os

import numpy as np
import onnx
import pytest
import torch

from bisenet_core.export import export_onnx
from bisenet_core.onnx_metadata import SPEC_KEY, read_onnx_export_info, read_onnx_spec
from bisenet_core.model import bisenet
from bisenet_core.modelfile import ModelFileError
from bisenet_core.spec import spec_for_dataset
from training.export import main as export_main

ort = pytest.importorskip('onnxruntime')

WIDTH, HEIGHT = 128, 96


@pytest.fixture(scope='module')
def model_and_spec():
    torch.manual_seed(0)
    spec = spec_for_dataset('camvid', backbone='xception39', input_size=(WIDTH, HEIGHT))
    return bisenet(spec.num_classes, spec.backbone).eval(), spec


@pytest.fixture(scope='module')
def inputs():
    gen = torch.Generator().manual_seed(1)
    return {(w, h): torch.randn(1, 3, h, w, generator=gen)
            for w, h in [(WIDTH, HEIGHT), (160, 64), (131, 97)]}


def run(path, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    return session.run(None, {'image': x.numpy()})[0]


def torch_logits(model, x):
    with torch.no_grad():
        return model(x).logits.numpy()


def test_fp32_logits_static(model_and_spec, inputs, tmp_path):
    model, spec = model_and_spec
    path = export_onnx(model, spec, tmp_path / 'sub' / 'm.onnx')
    assert path == tmp_path / 'sub' / 'm.onnx'
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    shape = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert shape == [1, 3, HEIGHT, WIDTH]
    assert read_onnx_spec(path) == spec
    assert json.loads({p.key: p.value for p in proto.metadata_props}[SPEC_KEY]) == spec.to_dict()
    x = inputs[(WIDTH, HEIGHT)]
    got, want = run(path, x), torch_logits(model, x)
    assert got.shape == (1, spec.num_classes, HEIGHT // 8, WIDTH // 8) and got.dtype == np.float32
    assert np.abs(got - want).max() < 1e-4 * np.abs(want).max()
    # Atomic write: nothing but the file is left in the folder.
    assert sorted(p.name for p in path.parent.iterdir()) == ['m.onnx']


def test_fixed_size_graph_rejects_other_sizes(model_and_spec, inputs, tmp_path):
    model, spec = model_and_spec
    path = export_onnx(model, spec, tmp_path / 'm.onnx')
    with pytest.raises(Exception, match='(?i)dimension|shape'):
        run(path, inputs[(160, 64)])


def test_dynamic_logits_any_size(model_and_spec, inputs, tmp_path):
    model, spec = model_and_spec
    path = export_onnx(model, spec, tmp_path / 'dyn.onnx', dynamic=True)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    assert read_onnx_export_info(path)['dynamic'] is True
    for (w, h), x in inputs.items():
        got, want = run(path, x), torch_logits(model, x)
        assert got.shape == (1, spec.num_classes, -(-h // 8), -(-w // 8))
        assert np.abs(got - want).max() < 1e-4 * np.abs(want).max()


def test_dynamic_batch_runs_batch_3_at_the_fixed_size(model_and_spec, inputs, tmp_path,
                                                      tiny_model_file, capsys):
    """dynamic_batch: any batch size, the image size stays fixed; each item of a batch of 3
    gets the logits torch gives it alone (the model itself is the reference)."""
    model, spec = model_and_spec
    path = export_onnx(model, spec, tmp_path / 'batch.onnx', dynamic_batch=True)
    shape = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert shape[0].dim_param and [d.dim_value for d in shape[1:]] == [3, HEIGHT, WIDTH]
    info = read_onnx_export_info(path)
    assert info['dynamic'] is False and info['dynamic_batch'] is True
    gen = torch.Generator().manual_seed(3)
    batch = torch.randn(3, 3, HEIGHT, WIDTH, generator=gen)
    batch[1] = 0.5  # a uniform image between two noisy ones
    got = run(path, batch)
    assert got.shape == (3, spec.num_classes, HEIGHT // 8, WIDTH // 8)
    for i in range(3):
        want = torch_logits(model, batch[i:i + 1])[0]
        assert np.abs(got[i] - want).max() < 1e-4 * np.abs(want).max(), i
    with pytest.raises(Exception, match='(?i)dimension|shape'):
        run(path, inputs[(160, 64)])  # the size is still fixed
    fixed = export_onnx(model, spec, tmp_path / 'fixed.onnx')
    assert read_onnx_export_info(fixed)['dynamic_batch'] is False
    with pytest.raises(Exception, match='(?i)dimension|shape'):
        run(fixed, batch)  # batch 1 only

    cli = tmp_path / 'cli.onnx'
    assert export_main(['--model', str(tiny_model_file), '--out', str(cli),
                        '--dynamic-batch']) == 0
    assert 'any batch' in capsys.readouterr().out
    assert read_onnx_export_info(cli)['dynamic_batch'] is True
    assert onnx.load(str(cli)).graph.input[0].type.tensor_type.shape.dim[0].dim_param


@pytest.mark.parametrize('dynamic', [False, True])
def test_labels_output(model_and_spec, inputs, tmp_path, dynamic):
    model, spec = model_and_spec
    path = export_onnx(model, spec, tmp_path / 'labels.onnx', output='labels', dynamic=dynamic)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    assert read_onnx_export_info(path)['output'] == 'labels'
    sizes = list(inputs) if dynamic else [(WIDTH, HEIGHT)]
    for size in sizes:
        x = inputs[size]
        labels = run(path, x)
        want = torch_logits(model, x).argmax(1)
        assert labels.dtype == np.uint8 and labels.shape == want.shape
        assert (labels == want).mean() >= 0.999


def test_fp16_export(model_and_spec, inputs, tmp_path):
    model, spec = model_and_spec
    param = next(model.parameters())
    path = export_onnx(model, spec, tmp_path / 'half.onnx', precision='fp16', dynamic=True)
    # The caller's model is untouched (a copy is converted).
    assert next(model.parameters()) is param and param.dtype == torch.float32
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    weights = [t for t in proto.graph.initializer if len(t.dims) == 4]
    assert weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights)
    # The interface stays float32 in, float32 out (documented in export.py).
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert read_onnx_export_info(path)['precision'] == 'fp16'
    x = inputs[(131, 97)]
    want = torch_logits(model, x)
    try:
        got = run(path, x)
    except Exception as exc:  # an ORT build without fp16 CPU kernels: checker only
        pytest.skip(f'ORT CPU cannot run this fp16 graph: {exc}')
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 2e-2 * np.abs(want).max()


def test_bad_arguments(model_and_spec, tmp_path):
    model, spec = model_and_spec
    with pytest.raises(ValueError, match='precision'):
        export_onnx(model, spec, tmp_path / 'a.onnx', precision='int8')
    with pytest.raises(ValueError, match='output'):
        export_onnx(model, spec, tmp_path / 'a.onnx', output='probs')
    with pytest.raises(ValueError, match='each side must be'):
        export_onnx(model, spec, tmp_path / 'a.onnx', input_size=(100, 9000))
    with pytest.raises(ValueError, match='classes'):
        export_onnx(model, spec.replace(class_names=['a', 'b'], palette=[(0, 0, 0)] * 2),
                    tmp_path / 'a.onnx')
    assert not list(tmp_path.iterdir())


def test_read_spec_errors(model_and_spec, tmp_path):
    model, spec = model_and_spec
    with pytest.raises(ModelFileError, match='missing.onnx: not found'):
        read_onnx_spec(tmp_path / 'missing.onnx')
    good = export_onnx(model, spec, tmp_path / 'good.onnx').read_bytes()
    truncated = tmp_path / 'truncated.onnx'
    truncated.write_bytes(good[:len(good) // 3])
    corrupt = tmp_path / 'corrupt.onnx'
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    for path in (truncated, corrupt):
        with pytest.raises(ModelFileError, match=path.name):
            read_onnx_spec(path)
    proto = onnx.load(str(tmp_path / 'good.onnx'))
    del proto.metadata_props[:]
    plain = tmp_path / 'plain.onnx'
    onnx.save(proto, str(plain))
    with pytest.raises(ModelFileError, match="plain.onnx: no 'bisenet_spec'"):
        read_onnx_spec(plain)
    assert read_onnx_export_info(plain)['output'] == 'logits'


def test_atomic_write_gives_the_usual_file_mode(tmp_path):
    from bisenet_core.atomic import atomic_write_bytes

    old = os.umask(0o022)
    try:
        path = atomic_write_bytes(b'x', tmp_path / 'model.onnx')
    finally:
        os.umask(old)
    assert path.read_bytes() == b'x'
    assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's private 0600
    assert [p.name for p in tmp_path.iterdir()] == ['model.onnx']  # no temporary left


def test_int8_quantisation_keeps_the_spec_and_runs(tiny_model_file, tmp_path):
    from bisenet_core.inference import Segmenter
    from bisenet_core.modelfile import load_model
    from bisenet_core.quantize import quantize_int8

    model, spec = load_model(tiny_model_file)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (90, 120, 3), dtype=np.uint8) for _ in range(3)]
    path = quantize_int8(model, spec, tmp_path / 'q.onnx', images)
    graph_ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert {'QuantizeLinear', 'DequantizeLinear'} <= graph_ops
    assert read_onnx_spec(path) == spec
    info = read_onnx_export_info(path)
    assert (info['precision'], info['output'], info['dynamic']) == ('int8', 'logits', False)
    assert info['input_size'] == list(spec.input_size)
    seg = Segmenter(path, backend='onnxruntime', device='cpu')
    assert seg.precision == 'int8' and seg.input_size == spec.input_size
    labels = seg.segment(images[0]).labels
    assert labels.shape == (90, 120) and labels.max() < spec.num_classes
    with pytest.raises(ValueError, match='at least one calibration image'):
        quantize_int8(model, spec, tmp_path / 'none.onnx', [])
    with pytest.raises(ValueError, match='uint8 H x W x 3'):
        quantize_int8(model, spec, tmp_path / 'gray.onnx', [images[0][..., 0]])


def test_export_cli_int8_needs_calibration_images(tiny_model_file, tmp_path, capsys):
    from training.export import main

    assert main(['--model', str(tiny_model_file), '--out', str(tmp_path / 'q.onnx'),
                 '--precision', 'int8']) == 2
    assert '--calib-images' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(['--model', str(tiny_model_file), '--out', str(tmp_path / 'q.onnx'),
              '--precision', 'int8', '--calib-images', str(tmp_path), '--calib-count', '0'])
    assert '--calib-count must be >= 1' in capsys.readouterr().err
    assert main(['--model', str(tiny_model_file), '--out', str(tmp_path / 'q.onnx'),
                 '--precision', 'int8', '--calib-images', str(tmp_path)]) == 2
    assert 'no png/jpg images found' in capsys.readouterr().err
    assert not (tmp_path / 'q.onnx').exists()


def test_class_count_is_checked_through_a_ddp_wrapper(model_and_spec, tmp_path):
    model, spec = model_and_spec

    class Wrapper(torch.nn.Module):  # what DistributedDataParallel looks like from outside
        def __init__(self, module):
            super().__init__()
            self.module = module

    other = bisenet(spec.num_classes + 1, spec.backbone)
    with pytest.raises(ValueError, match='classes but the spec lists'):
        export_onnx(Wrapper(other), spec, tmp_path / 'a.onnx')
    assert export_onnx(Wrapper(model), spec, tmp_path / 'b.onnx').is_file()
