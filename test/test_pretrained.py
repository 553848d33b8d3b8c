"""ImageNet backbone loading: torchvision/timm key layouts, wrappers, prefixes, clear errors."""
import pytest
import torch

from bisenet_core.model import bisenet, load_backbone_weights
from bisenet_core.model.pretrained import BackboneWeightsError
from bisenet_core.model.resnet import resnet18


def imagenet_resnet18_state() -> dict:
    """A resnet18 state dict as torchvision ships it: distinct values, fc included, and (like
    the original 2017 files) no BatchNorm num_batches_tracked counters."""
    torch.manual_seed(1)
    source = resnet18()
    state = {k: v for k, v in source.state_dict().items() if not k.endswith('num_batches_tracked')}
    for value in state.values():
        value.copy_(torch.randn_like(value))
    state['fc.weight'] = torch.randn(1000, 512)
    state['fc.bias'] = torch.randn(1000)
    return state


def assert_loaded(model, state):
    loaded = model.context_path.backbone.state_dict()
    for key, value in state.items():
        if not key.startswith('fc.'):
            torch.testing.assert_close(loaded[key], value, rtol=0, atol=0, msg=key)


@pytest.mark.parametrize('layout', ['torchvision', 'timm-checkpoint', 'ddp-model', 'compiled'])
def test_weights_arrive(tmp_path, layout):
    state = imagenet_resnet18_state()
    blob = {
        'torchvision': state,
        # timm's train.py checkpoints: {'epoch', 'arch', 'state_dict', ...}, DataParallel keys
        'timm-checkpoint': {'epoch': 99, 'arch': 'resnet18',
                            'state_dict': {f'module.{k}': v for k, v in state.items()}},
        'ddp-model': {'model': {f'module.{k}': v for k, v in state.items()}},
        'compiled': {f'_orig_mod.{k}': v for k, v in state.items()},
    }[layout]
    path = tmp_path / 'resnet18.pth'
    torch.save(blob, path)
    model = bisenet(3, 'resnet18')
    head_before = model.head.classifier.weight.clone()
    assert load_backbone_weights(model, path) == len(state) - 2  # everything but fc
    assert_loaded(model, state)
    torch.testing.assert_close(model.head.classifier.weight, head_before)  # heads untouched


def test_wrong_network_raises_one_line_naming_file_and_networks(tmp_path):
    path = tmp_path / 'resnet18.pth'
    torch.save(imagenet_resnet18_state(), path)
    model = bisenet(3, 'xception39')
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(BackboneWeightsError) as info:
        load_backbone_weights(model, path)
    message = str(info.value)
    assert '\n' not in message
    assert str(path) in message and 'resnet18 weights' in message
    assert 'xception39 backbone' in message and 'missing' in message and 'unexpected' in message
    for key, value in model.state_dict().items():  # nothing was loaded
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)


def test_wrong_shape_is_reported(tmp_path):
    state = imagenet_resnet18_state()
    state['layer3.0.conv1.weight'] = torch.randn(128, 128, 3, 3)
    path = tmp_path / 'odd.pth'
    torch.save(state, path)
    with pytest.raises(BackboneWeightsError, match=r'1 of the wrong shape \(e\.g\. '
                                                   r'layer3\.0\.conv1\.weight'):
        load_backbone_weights(bisenet(3, 'resnet18'), path)


class NotWeights:
    pass


@pytest.mark.parametrize('content, reason', [
    (None, 'not found'),
    (b'not a torch file', 'cannot be read'),
    (torch.zeros(3), 'not a state dict'),
    ({'epoch': 3}, 'not a state dict'),
    (NotWeights(), 'cannot be read'),  # pickled code is refused (weights_only=True)
])
def test_unreadable_files_raise_clearly(tmp_path, content, reason):
    path = tmp_path / 'weights.pth'
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(BackboneWeightsError, match=reason) as info:
        load_backbone_weights(bisenet(3, 'resnet18'), path)
    assert str(path) in str(info.value) and '\n' not in str(info.value)
