"""Weights trained elsewhere: ImageNet backbones, and the file readers published BiSeNets share.

`load_backbone_weights` initialises the Context Path backbone from torchvision or timm ResNet
weights; `read_state_dict` and `state_dict_mismatch` also serve the importer of published
BiSeNet checkpoints (bisenet_core.published).

Nothing is downloaded: give the path of a state dict you have, e.g. torchvision's
`resnet18-f37072fd.pth`, timm's `pytorch_model.bin` / `model.safetensors`, or for the
'resnet101_deepstem' backbone TorchSeg's `resnet101_v1c.pth` (same key names). The file may
hold the state dict directly or under 'state_dict' / 'model' (training checkpoints), with
'module.' (DataParallel), '_orig_mod.' (torch.compile) or 'backbone.' prefixes. The
classifier (fc.*) is dropped; everything else must match the backbone exactly.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from torch import nn

from bisenet_core.torchfile import check_path, load_torch_file

# Wrappers training scripts put around a state dict, tried in this order.
_NESTING_KEYS = ('state_dict', 'model')
# Prefixes stripped when every key carries them.
_PREFIXES = ('module.', '_orig_mod.', 'backbone.')
# ImageNet classifier, not part of the backbone.
_CLASSIFIER = re.compile(r'^fc\.')
# ResNet blocks per stage -> name, for messages that say which network a file holds.
_RESNETS = {
    (False, (2, 2, 2, 2)): 'resnet18', (False, (3, 4, 6, 3)): 'resnet34',
    (True, (3, 4, 6, 3)): 'resnet50', (True, (3, 4, 23, 3)): 'resnet101',
    (True, (3, 8, 36, 3)): 'resnet152',
}


class WeightsFileError(RuntimeError):
    """Weights are missing, unreadable or do not fit (one-line message naming the file)."""


BackboneWeightsError = WeightsFileError  # the name load_backbone_weights' callers know


def load_backbone_weights(model: nn.Module, path: str | os.PathLike) -> int:
    """Load ImageNet weights into `model.context_path.backbone`; return the tensors loaded.

    Raises BackboneWeightsError (one line, naming the file) if the file cannot be read or
    any backbone tensor is missing, extra or of the wrong shape; the model is then unchanged.
    """
    path = Path(path)
    backbone = model.context_path.backbone
    source = read_state_dict(path, 'backbone weights')
    source = {k: v for k, v in source.items() if not _CLASSIFIER.match(k)}
    target = backbone.state_dict()
    missing, unexpected, wrong_shape = state_dict_mismatch(source, target)
    if missing or unexpected or wrong_shape:
        problems = [f'{len(items)} {what} (e.g. {items[0]})' for what, items in
                    (('missing', missing), ('unexpected', unexpected),
                     ('of the wrong shape', wrong_shape)) if items]
        raise BackboneWeightsError(
            f'backbone weights {path}: {_network_name(source)} weights do not fit the '
            f'{_network_name(target)} backbone: {"; ".join(problems)}')
    backbone.load_state_dict(source, strict=False)  # strict=False: old files lack the BN counters
    return len(source)


def read_state_dict(path: str | os.PathLike, what: str,
                    prefixes: tuple[str, ...] = _PREFIXES) -> dict[str, torch.Tensor]:
    """The state dict in a weights file, unwrapped from checkpoint dicts, prefixes stripped.

    Loads with weights_only=True (no pickled code runs). `what` names the file in errors
    ('backbone weights'); raises WeightsFileError (one line, naming the file).
    """
    path = Path(path)
    return _strip_prefixes(_unwrap(_read(path, what), path, what), prefixes)


def state_dict_mismatch(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
                        ) -> tuple[list[str], list[str], list[str]]:
    """(missing, unexpected, wrong-shape) keys of `source` against `target`, sorted.

    BatchNorm counters (num_batches_tracked) may be absent: old files lack them and eval
    never reads them. Wrong-shape entries read 'key (source shape) vs (target shape)'.
    """
    missing = sorted(k for k in target
                     if k not in source and not k.endswith('num_batches_tracked'))
    unexpected = sorted(k for k in source if k not in target)
    wrong_shape = sorted(f'{k} {tuple(source[k].shape)} vs {tuple(target[k].shape)}'
                         for k in source if k in target and source[k].shape != target[k].shape)
    return missing, unexpected, wrong_shape


def _read(path: Path, what: str) -> dict:
    if path.suffix != '.safetensors':
        return load_torch_file(path, what, WeightsFileError, prefix='cannot be read: ',
                               onnx_hint=' (a state dict is needed)')
    check_path(path, what, WeightsFileError)
    try:
        from safetensors.torch import load_file  # optional: only for timm's HF files
        return load_file(str(path), device='cpu')
    except ImportError:
        raise WeightsFileError(f'{what} {path}: reading .safetensors needs the '
                               f'safetensors package (pip install safetensors)') from None
    except Exception as exc:  # truncated or not safetensors: its parser's first line
        reason = ' '.join(str(exc).split()) or type(exc).__name__
        raise WeightsFileError(f'{what} {path}: cannot be read as safetensors: '
                               f'{reason}') from None


def _unwrap(blob, path: Path, what: str) -> dict[str, torch.Tensor]:
    """Find the state dict inside a training checkpoint."""
    for key in _NESTING_KEYS:
        if isinstance(blob, dict) and isinstance(blob.get(key), dict):
            blob = blob[key]
    if not isinstance(blob, dict) or not blob or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in blob.items()):
        raise WeightsFileError(f'{what} {path}: not a state dict of tensors '
                               f'(nor one under {" or ".join(_NESTING_KEYS)!s})')
    return blob


def _strip_prefixes(state: dict[str, torch.Tensor], prefixes: tuple[str, ...]
                    ) -> dict[str, torch.Tensor]:
    stripped = True
    while stripped:
        stripped = False
        for prefix in prefixes:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                stripped = True
    return state


def _network_name(state: dict) -> str:
    """'resnet18', 'resnet101', 'resnet101_deepstem', ... from the keys, else 'unrecognised'."""
    blocks = [{int(m.group(2)) for k in state
               if (m := re.match(r'layer(\d)\.(\d+)\.', k)) and m.group(1) == str(stage)}
              for stage in range(1, 5)]
    if not all(blocks):
        return 'xception39' if any(k.startswith('stem.') for k in state) else 'unrecognised'
    bottleneck = any('.conv3.' in k for k in state)
    name = _RESNETS.get((bottleneck, tuple(max(b) + 1 for b in blocks)), 'unrecognised ResNet')
    return name + '_deepstem' if 'conv1.0.weight' in state else name
