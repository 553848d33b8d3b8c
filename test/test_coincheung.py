"""CoinCheung's published BiSeNetV1 weights: import, exact reproduction, refusal, every tool.

Expectations come from outside our code: the fixture (a random-weight checkpoint in his key
layout, an input and his model's output, computed with his code) and, where the reference
code is present, his `BiSeNetV1` itself run here (train-mode aux heads, other sizes).
"""
import copy
import importlib
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bisenet_core.classes import CITYSCAPES
from bisenet_core.model.pretrained import WeightsFileError
from bisenet_core.model import bisenet
from bisenet_core.modelfile import load_model
from bisenet_core.profile import count_macs, count_params
from bisenet_core.published import CheckpointMismatchError, import_coincheung

FIXTURE = Path(__file__).resolve().parents[2] / 'shared' / 'fixtures' / 'coincheung_bisenetv1'
REFERENCE = FIXTURE.parents[1] / 'reference' / 'coincheung_bisenetv1'
CHECKPOINT = FIXTURE / 'bisenetv1_r18_19cls_random.pth'

needs_fixture = pytest.mark.skipif(not CHECKPOINT.is_file(),
                                   reason=f'CoinCheung fixture absent ({FIXTURE})')
needs_reference = pytest.mark.skipif(not (REFERENCE / 'bisenetv1.py').is_file(),
                                     reason=f'CoinCheung reference code absent ({REFERENCE})')


@pytest.fixture(scope='module')
def fixture_state():
    return torch.load(CHECKPOINT, map_location='cpu', weights_only=True)


@pytest.fixture(scope='module')
def imported(tmp_path_factory):
    """The fixture checkpoint imported as a Cityscapes model file, and the loaded model."""
    path, _ = import_coincheung(CHECKPOINT, 'cityscapes',
                                tmp_path_factory.mktemp('imported') / 'city.pt')
    model, spec = load_model(path)
    return path, model, spec


@needs_fixture
def test_full_size_logits_and_labels_match_coincheung(imported):
    _, model, spec = imported
    x = torch.from_numpy(np.load(FIXTURE / 'input_1x3x256x512.npy'))
    expected = torch.from_numpy(np.load(FIXTURE / 'logits_eval_1x19x256x512.npy')).float()
    assert spec.architecture == 'coincheung' and spec.backbone == 'resnet18'
    with torch.no_grad():
        logits = model(x).logits
    assert logits.shape == (1, 19, 32, 64)  # 1/8, the node upsamples
    # His head upsamples x8 (bilinear, align_corners=False); so does our post-processing.
    full = F.interpolate(logits, scale_factor=8, mode='bilinear', align_corners=False)
    assert full.shape == expected.shape
    assert (full - expected).abs().max().item() <= 2e-3
    agreement = (full.argmax(1) == expected.argmax(1)).float().mean().item()
    assert agreement >= 0.999, agreement


def _save_variant(state, tmp_path, name='variant.pth'):
    path = tmp_path / name
    torch.save(state, path)
    return path


@needs_fixture
@pytest.mark.parametrize('old, new', [
    ('cp.arm16.conv_atten.weight', 'cp.arm16.conv_attn.weight'),
    ('cp.resnet.layer3.1.bn2.running_var', 'cp.resnet.layer3.1.bn2.running_variance'),
    ('conv_out16.conv_out.bias', 'conv_out8.conv_out.bias'),
])
def test_a_renamed_key_is_refused_by_name(fixture_state, tmp_path, old, new):
    state = dict(fixture_state)
    state[new] = state.pop(old)
    out = tmp_path / 'model.pt'
    with pytest.raises(CheckpointMismatchError) as info:
        import_coincheung(_save_variant(state, tmp_path), 'cityscapes', out)
    message = str(info.value)
    assert f'missing {old}' in message and f'unexpected {new}' in message
    assert '\n' not in message and not out.exists()


@needs_fixture
@pytest.mark.parametrize('key, shape', [
    ('ffm.conv.weight', (256, 128, 1, 1)),
    ('sp.conv_out.bn.running_mean', (64,)),
    ('cp.resnet.layer4.0.downsample.0.weight', (512, 256, 3, 3)),
])
def test_a_changed_shape_is_refused_by_name(fixture_state, tmp_path, key, shape):
    state = dict(fixture_state)
    state[key] = torch.zeros(shape, dtype=state[key].dtype)
    out = tmp_path / 'model.pt'
    with pytest.raises(CheckpointMismatchError) as info:
        import_coincheung(_save_variant(state, tmp_path), 'cityscapes', out)
    expected_shape = tuple(fixture_state[key].shape)
    assert f'{key} {shape} vs {expected_shape}' in str(info.value)
    assert not out.exists()


@needs_fixture
def test_wrong_dataset_and_unreadable_files_are_refused(tmp_path):
    with pytest.raises(CheckpointMismatchError, match='19 classes .* ade20k has 150'):
        import_coincheung(CHECKPOINT, 'ade20k', tmp_path / 'a.pt')
    with pytest.raises(ValueError, match='unknown dataset'):
        import_coincheung(CHECKPOINT, 'kitti', tmp_path / 'k.pt')
    with pytest.raises(WeightsFileError, match='not found'):
        import_coincheung(tmp_path / 'nothing.pth', 'cityscapes', tmp_path / 'n.pt')
    (tmp_path / 'junk.pth').write_bytes(b'not a checkpoint')
    with pytest.raises(WeightsFileError, match='cannot be read'):
        import_coincheung(tmp_path / 'junk.pth', 'cityscapes', tmp_path / 'j.pt')


@needs_fixture
def test_ddp_prefixed_and_wrapped_checkpoints_import(fixture_state, tmp_path):
    wrapped = {'state_dict': {f'module.{k}': v for k, v in fixture_state.items()}}
    _, spec = import_coincheung(_save_variant(wrapped, tmp_path), 'cityscapes',
                                tmp_path / 'm.pt')
    assert spec.num_classes == 19


@needs_fixture
def test_cli_writes_a_normal_model_file(tmp_path, capsys):
    from training import import_weights

    out = tmp_path / 'city.pt'
    assert import_weights.main(['--from', 'coincheung', str(CHECKPOINT), '--dataset',
                                'cityscapes', '--out', str(out)]) == 0
    printed = capsys.readouterr().out
    assert "CoinCheung's figure, not measured here" in printed
    model, spec = load_model(out)
    assert spec.class_names == tuple(name for name, _ in CITYSCAPES)
    assert spec.palette[0] == (128, 64, 128) and spec.palette[18] == (119, 11, 32)
    # His Cityscapes normalisation (lib/data/cityscapes_cv2.py), RGB order.
    assert spec.mean == (0.3257, 0.3690, 0.3223) and spec.std == (0.2112, 0.2148, 0.2115)
    assert spec.input_size == (2048, 1024) and spec.dataset == 'cityscapes'
    assert spec.info['reported_miou'] == 0.7544 and 'not measured here' in spec.info['note']
    # A size that is not a multiple of 32 is accepted, with a note on the padding.
    assert import_weights.main(['--from', 'coincheung', str(CHECKPOINT), '--dataset',
                                'cityscapes', '--out', str(out), '--input-size',
                                '640x360']) == 0
    assert 'zero-pads it to 640x384' in capsys.readouterr().out
    assert load_model(out)[1].input_size == (640, 360)
    # Refusals: one line on stderr, exit code 2.
    assert import_weights.main(['--from', 'coincheung', str(CHECKPOINT), '--dataset',
                                'cocostuff', '--out', str(tmp_path / 'c.pt')]) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'cocostuff has 171' in err
    assert not (tmp_path / 'c.pt').exists()


def test_parameter_and_mac_counts_are_coincheungs():
    with torch.device('meta'):
        model = bisenet(19, 'resnet18', architecture='coincheung')
    # README.json of the fixture: his BiSeNetV1(19) has 13,425,721 parameters in all.
    assert count_params(model, aux=True) == 13_425_721
    # His two aux heads (conv_out16/32): 3x3 conv 128->64 + BN + 1x1 conv 64->19 with bias.
    aux_head = 64 * 128 * 9 + 2 * 64 + 19 * 64 + 19
    assert count_params(model) == 13_425_721 - 2 * aux_head
    # MACs: his layout is the authors' ('torchseg') with a 256-wide main head (not 64) and
    # one 256x256 attention conv in the FFM (not two); nearest vs bilinear costs no MACs.
    with torch.device('meta'):
        torchseg = bisenet(19, 'resnet18', architecture='torchseg')
    cells = (640 // 8) * (384 // 8)
    head = cells * (9 * 256 * (256 - 64) + 19 * (256 - 64))
    assert count_macs(model, 640, 360) - count_macs(torchseg, 640, 360) == head - 256 * 256


# ------------------------------------------------------------------ his code as the reference
@pytest.fixture(scope='module')
def reference_net(fixture_state):
    """CoinCheung's BiSeNetV1 (aux_mode='train') with the fixture weights, run from his file.

    His module imports torchvision (unused) and downloads ImageNet weights in Resnet18's
    constructor: neither is available here, so both are stubbed while it is built.
    """
    import torch.utils.model_zoo as model_zoo

    saved = {name: sys.modules.get(name) for name in ('torchvision', 'coincheung_reference')}
    load_url = model_zoo.load_url
    package = types.ModuleType('coincheung_reference')
    package.__path__ = [str(REFERENCE)]
    sys.modules['coincheung_reference'] = package
    sys.modules['torchvision'] = types.ModuleType('torchvision')
    model_zoo.load_url = lambda *args, **kw: {}
    try:
        module = importlib.import_module('coincheung_reference.bisenetv1')
        net = module.BiSeNetV1(19, aux_mode='train')
    finally:
        model_zoo.load_url = load_url
        for name, value in saved.items():
            if value is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = value
        sys.modules.pop('coincheung_reference.bisenetv1', None)
        sys.modules.pop('coincheung_reference.resnet', None)
    net.load_state_dict({k: v.float() if v.is_floating_point() else v
                         for k, v in fixture_state.items()})
    return net.eval()


@needs_fixture
@needs_reference
def test_train_mode_outputs_and_aux_heads_match_his_model(imported, reference_net):
    """All three outputs in training mode (batch statistics), so the aux heads map right."""
    _, model, _ = imported
    x = torch.from_numpy(np.load(FIXTURE / 'input_1x3x256x512.npy'))[:, :, :128, :256]
    x = torch.cat([x, x.flip(-1)])  # BatchNorm in training mode needs > 1 image
    # Copies: a training-mode pass updates the BatchNorm running statistics.
    ours = copy.deepcopy(model).train()
    theirs = copy.deepcopy(reference_net).train()
    with torch.no_grad():
        out, out16, out32 = theirs(x)
        mine = ours(x)
    assert len(mine.aux) == 2
    for got, want, stride in [(mine.logits, out, 8), (mine.aux[0], out16, 8),
                              (mine.aux[1], out32, 16)]:
        assert got.shape[-2:] == (128 // stride, 256 // stride)
        full = F.interpolate(got, scale_factor=stride, mode='bilinear', align_corners=False)
        torch.testing.assert_close(full, want, rtol=1e-4, atol=1e-4)


@needs_fixture
@needs_reference
def test_other_sizes_are_padded_to_32_where_his_code_fails(imported, reference_net):
    """A 100x200 frame: his model cannot run it (nearest x2 of the 7-row 1/32 map is not the
    13-row 1/16 map); ours zero-pads to 128x224 inside, which equals his model on the
    zero-padded frame, cropped."""
    _, model, _ = imported
    x = torch.randn(1, 3, 100, 200, generator=torch.Generator().manual_seed(3))
    with torch.no_grad(), pytest.raises(RuntimeError, match='must match'):
        reference_net(x)
    with torch.no_grad():
        padded = reference_net(F.pad(x, (0, 24, 0, 28)))[0]
        logits = model(x).logits
    assert logits.shape[-2:] == (13, 25)  # ceil(100 / 8) x 200 / 8
    full = F.interpolate(logits, scale_factor=8, mode='bilinear', align_corners=False)
    # Up to column 195 (x8 bilinear: 24.4 cells) both interpolate between the same cells;
    # beyond, his reads padded cell 25, which our crop dropped.
    torch.testing.assert_close(full[:, :, :100, :196], padded[:, :, :100, :196],
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('num_classes', [150, 171])
def test_bilinear_upsampling_handles_ade20k_and_cocostuff(num_classes):
    """cv2.resize interpolates at most 128 channels at once; the label path must not care."""
    from bisenet_core.inference.postprocess import logits_to_labels

    logits = np.random.default_rng(num_classes).standard_normal((num_classes, 12, 16))
    logits = logits.astype(np.float32)
    logits[num_classes - 1, :6] += 10.0  # the last class wins the top half
    got = logits_to_labels(logits, (96, 128), 'bilinear')
    want = F.interpolate(torch.from_numpy(logits)[None], size=(96, 128), mode='bilinear',
                         align_corners=False)[0].argmax(0).numpy()
    assert (got == want).all() and (got[:40] == num_classes - 1).all()


@needs_fixture
def test_onnx_export_matches_torch(imported, tmp_path):
    """Nearest upsampling and the conv-BN attention survive the export, at any size."""
    ort = pytest.importorskip('onnxruntime')
    from bisenet_core.export import export_onnx
    from bisenet_core.onnx_metadata import read_onnx_spec

    _, model, spec = imported
    path = export_onnx(model, spec, tmp_path / 'city.onnx', dynamic=True,
                       input_size=(256, 128))
    assert read_onnx_spec(path).architecture == 'coincheung'
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    x = torch.from_numpy(np.load(FIXTURE / 'input_1x3x256x512.npy'))
    for height, width in [(128, 256), (100, 200)]:
        crop = x[:, :, :height, :width].contiguous()
        got = session.run(None, {'image': crop.numpy()})[0]
        with torch.no_grad():
            want = model(crop).logits.numpy()
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


@needs_fixture
@needs_reference
def test_segmenter_reproduces_his_demo(imported, reference_net):
    """A camera frame through our Segmenter gives his tools/demo.py labels: RGB, his
    Cityscapes mean/std (typed here from his lib/data/cityscapes_cv2.py), argmax of his
    full-size output."""
    from bisenet_core.inference import Segmenter

    path, _, _ = imported
    rng = np.random.default_rng(5)
    coarse = rng.integers(0, 256, (16, 32, 3)).astype(np.uint8)
    image = np.kron(coarse, np.ones((8, 8, 1), np.uint8))  # 128x256 RGB, blocky like a scene
    mean = np.array([0.3257, 0.3690, 0.3223], np.float32)
    std = np.array([0.2112, 0.2148, 0.2115], np.float32)
    x = torch.from_numpy(((image / 255.0 - mean) / std).astype(np.float32).transpose(2, 0, 1))
    with torch.no_grad():
        want = reference_net(x[None])[0].argmax(1)[0].numpy()
    segmenter = Segmenter(path, backend='torch', device='cpu', input_size=(256, 128),
                          upsample='bilinear')
    got = segmenter(image)
    assert got.shape == (128, 256) and len(np.unique(want)) > 1
    assert (got == want).mean() >= 0.999
    # BGR frames (the node's bgr8) give the same labels when said so.
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    assert (segmenter.segment(bgr, color_order='bgr').labels == got).all()


# ------------------------------------------------------- fine-tuning, evaluation, the node
TINY_RUN = """# fine-tune on two tiny synthetic drives (CamVid classes)
model:
  dataset: camvid
  input_size: [96, 64]
  pretrained: imagenet-weights-we-do-not-have.pth   # --init-from clears it
data:
  format: synthetic
  crop_size: [64, 64]
  scales: [1.0]
  num_workers: 0
  synthetic: {train_seeds: [1, 2], train_frames: 4, val_frames: 2, test_frames: 4,
              size: [96, 64]}
train: {batch_size: 2, warmup_iters: 0, eval_interval: 0, threads: 1, lr: 1.0e-9,
        weight_decay: 0.0, freeze_bn: true}
"""


@pytest.fixture(scope='module')
def finetuned(imported, tmp_path_factory):
    """training.train --init-from the imported Cityscapes model, 2 steps on CamVid classes."""
    from training import train

    root = tmp_path_factory.mktemp('finetune')
    (root / 'tiny.yaml').write_text(TINY_RUN)
    (root / 'init.pt').write_bytes(imported[0].read_bytes())
    argv = ['--config', str(root / 'tiny.yaml'), '--data-root', str(root / 'data'),
            '--output-dir', str(root / 'run'), '--iterations', '2', '--no-progress',
            '--init-from', str(root / 'init.pt')]
    return root, argv, train.main(argv)


@needs_fixture
def test_finetuning_starts_from_the_imported_weights(imported, finetuned, capsys):
    _, model, city = imported
    root, argv, code = finetuned
    assert code == 0
    tuned, spec = load_model(root / 'run' / 'model.pt')
    assert (spec.backbone, spec.architecture) == ('resnet18', 'coincheung')
    assert spec.num_classes == 11 and (spec.mean, spec.std) == (city.mean, city.std)
    old, new = model.state_dict(), tuned.state_dict()
    fresh = {k for k in new if new[k].shape != old[k].shape}
    assert fresh == {f'{head}.classifier.{p}' for head in ('head', 'aux_head16', 'aux_head32')
                     for p in ('weight', 'bias')}
    # lr 1e-9 and frozen BatchNorm: everything else is still his, to the last bit or nearly.
    for key in set(new) - fresh:
        torch.testing.assert_close(new[key], old[key], rtol=0, atol=1e-6, msg=key)


@needs_fixture
def test_finetuning_refuses_another_network_and_resumes_without_it(finetuned, capsys):
    from training import train

    root, argv, _ = finetuned
    capsys.readouterr()
    # Naming the file in YAML/--set (not --init-from) keeps the config's backbone: refused.
    config = argv[:argv.index('--init-from')] + [
        '--set', f'model.init_from={root / "init.pt"}', '--set', 'model.pretrained=',
        '--output-dir', str(root / 'refused')]
    assert train.main(config) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and "backbone 'resnet18' (run: 'xception39')" in err
    assert "architecture 'coincheung'" in err and 'model.init_from' in err
    assert not (root / 'refused' / 'model.pt').exists()
    # A resumed run takes its weights from the checkpoint: the file may be gone by then.
    (root / 'init.pt').rename(root / 'moved.pt')
    try:
        assert train.main(['--resume', str(root / 'run' / 'last.ckpt'), '--iterations', '3',
                           '--output-dir', str(root / 'resumed'), '--no-progress']) == 0
    finally:
        (root / 'moved.pt').rename(root / 'init.pt')
    assert 'steps 2 -> 3' in capsys.readouterr().out


@needs_fixture
def test_evaluate_and_live_replay_through_the_node(finetuned, tmp_path, monkeypatch):
    """The fine-tuned model in training.evaluate and in the node (ros2 launch model:=...),
    fed a bag of a held-out synthetic drive: every frame comes back, masks equal offline."""
    import shutil

    from bisenet_ros import bags, replay
    from training import evaluate

    root, _, _ = finetuned
    model = root / 'run' / 'model.pt'
    assert evaluate.main(['--model', str(model), '--data', str(root / 'data'), '--split',
                          'test', '--out', str(tmp_path / 'eval'), '--no-progress']) == 0
    assert (tmp_path / 'eval' / 'results.json').is_file()
    if shutil.which('ros2') is None:
        pytest.skip('needs the ros2 command (make setup)')
    bag = bags.convert_drive(root / 'data', tmp_path / 'bag', split='test', fps=10.0,
                             progress=False)
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    report = replay.evaluate(replay.ReplayOptions(bag, model, mode='both', rate=None,
                                                  out=tmp_path / 'replay', backend='torch',
                                                  device='cpu', start_timeout=120.0,
                                                  progress=False))
    live = report['live']
    assert live['frames_sent'] == live['frames_received'] == 4 and live['dropped'] == 0
    assert report['comparison']['pixel_agreement'] == 1.0
    assert report['model']['num_classes'] == 11
