"""Training checkpoints: everything needed to resume a run exactly.

A checkpoint holds model, optimiser, scheduler and grad-scaler states, the step, the run's
config, the best validation mIoU so far and the RNG states. It contains plain types and
tensors only, so it loads with `weights_only=True`. It is not the model file the node
loads (that is bisenet_core.modelfile, written next to it).
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bisenet_core.atomic import atomic_torch_save
from bisenet_core.modelfile import CHECKPOINT_FORMAT

FORMAT = CHECKPOINT_FORMAT  # model files name it too, to say what a checkpoint is


class CheckpointError(RuntimeError):
    """A checkpoint is missing or unreadable (one-line message naming the file)."""


def rng_states() -> dict[str, Any]:
    """Python, NumPy and torch RNG states as plain types/tensors."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states = {
        'python': _to_lists(random.getstate()),
        'numpy': [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        'torch': torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states['cuda'] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what rng_states() returned."""
    version, internal, gauss = states['python']
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = states['numpy']
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states['torch'])
    if 'cuda' in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states['cuda'][:torch.cuda.device_count()])


def save_checkpoint(path: str | os.PathLike, *, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, scheduler, scaler, step: int,
                    config: dict[str, Any], best_miou: float) -> Path:
    """Write a resumable checkpoint atomically (a crash never leaves half a file)."""
    module = getattr(model, 'module', model)
    return atomic_torch_save({
        'format': FORMAT,
        'model': module.state_dict(),
        'optimizer': optimizer.state_dict(),
        'scheduler': scheduler.state_dict(),
        'scaler': scaler.state_dict() if scaler is not None else {},
        'step': int(step),
        'config': config,
        'best_miou': float(best_miou),
        'rng': rng_states(),
    }, path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint (on CPU) or raise CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f'checkpoint {path}: not found')
    try:
        blob = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f'checkpoint {path}: cannot be read: {reason[:200]}') from None
    if not isinstance(blob, dict) or blob.get('format') != FORMAT:
        raise CheckpointError(f'checkpoint {path}: not a {FORMAT} file '
                              '(a model file? use it as model.pretrained or with evaluate)')
    return blob


def _to_lists(value):
    if isinstance(value, tuple):
        return [_to_lists(v) for v in value]
    return value
