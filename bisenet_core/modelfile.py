"""The model file: BiSeNet weights plus their ModelSpec, one format for everything.

A model file is a `torch.save`d dict of plain types and tensors, loaded with
`weights_only=True` (no pickle code runs):
    {'format': 'bisenet-ros-model', 'version': 1, 'spec': ModelSpec.to_dict(), 'state_dict': ...}
"""
from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import torch

from bisenet_core.atomic import atomic_torch_save
from bisenet_core.model import bisenet  # models know nothing of files; files know models
from bisenet_core.spec import ModelSpec

FORMAT = 'bisenet-ros-model'
VERSION = 1


class ModelFileError(RuntimeError):
    """A model file is missing, truncated, corrupt or does not fit its spec (one-line message)."""


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The BiSeNet inside a DistributedDataParallel and/or torch.compile wrapper."""
    module = getattr(model, 'module', model)         # DDP
    return getattr(module, '_orig_mod', module)      # torch.compile


def check_file(path: str | os.PathLike, kind: str = 'model file') -> Path:
    """`path` as a Path, or ModelFileError when it is missing, a folder or empty.

    The one check before reading a model file (`kind` names it: 'model file', 'ONNX file').
    """
    path = Path(path)
    if path.is_dir():
        raise ModelFileError(f'{kind} {path}: is a folder, not a file')
    if not path.is_file():
        raise ModelFileError(f'{kind} {path}: not found')
    if path.stat().st_size == 0:
        raise ModelFileError(f'{kind} {path}: empty file')
    return path


def save_model(path: str | os.PathLike, model: torch.nn.Module, spec: ModelSpec) -> Path:
    """Write weights + spec atomically. `model` may be wrapped (DDP) or compiled."""
    module = unwrap_model(model)
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    return atomic_torch_save(
        {'format': FORMAT, 'version': VERSION, 'spec': spec.to_dict(), 'state_dict': state}, path)


def read_model_file(path: str | os.PathLike) -> tuple[dict, ModelSpec]:
    """Load (state_dict, spec) safely, or raise ModelFileError naming the file and the problem."""
    path = check_file(path)
    try:
        blob = torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses pickled code (a payload, or a whole pickled nn.Module).
        found = re.search(r'GLOBAL (\S+)', str(exc))
        what = f' (it imports {found.group(1)})' if found else ''
        raise ModelFileError(f'model file {path}: not a plain weights file{what}; refused for '
                             'safety: loading it could run code. Save models with '
                             'bisenet_core.modelfile.save_model') from None
    except Exception as exc:  # truncated zip, not a torch file ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f'model file {path}: cannot be read (truncated or corrupt?): '
                             f'{reason[:200]}') from None
    if not isinstance(blob, dict) or blob.get('format') != FORMAT:
        raise ModelFileError(f'model file {path}: not a {FORMAT} file')
    if blob.get('version', 0) > VERSION:
        raise ModelFileError(f'model file {path}: version {blob["version"]} is newer than '
                             f'this code understands ({VERSION})')
    try:
        spec = ModelSpec.from_dict(blob['spec'])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f'model file {path}: bad spec: {exc}') from None
    state = blob.get('state_dict')
    if not isinstance(state, dict) or not state:
        raise ModelFileError(f'model file {path}: no weights')
    return state, spec


def load_model(path: str | os.PathLike, device: str | torch.device = 'cpu'
               ) -> tuple[torch.nn.Module, ModelSpec]:
    """Rebuild the BiSeNet described by the file, load its weights, return (model.eval(), spec)."""
    state, spec = read_model_file(path)
    return build_model(state, spec, path).to(device), spec


def build_model(state: dict, spec: ModelSpec, path: str | os.PathLike) -> torch.nn.Module:
    """The eval-mode BiSeNet of read_model_file's (state, spec); `path` names it in errors."""
    model = bisenet(spec.num_classes, backbone=spec.backbone, architecture=spec.architecture,
                    aux_head_channels=spec.aux_head_channels)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = ' '.join(line.strip() for line in first[:3])
        raise ModelFileError(f'model file {path}: weights do not match a {spec.backbone} BiSeNet '
                             f'({spec.architecture}) with {spec.num_classes} classes: '
                             f'{detail[:300]}') from None
    return model.eval()
