"""Fine-tuning: start a run from a model file (model.init_from), e.g. imported published weights.

Every tensor of the file's network is loaded into the new one, except those whose shape
differs: with another class list, the three classifiers (main and auxiliary heads) start
from their fresh initialisation. The file must hold the same network (backbone and
architecture) and the run keeps its normalisation, because the weights were learnt with it.
"""
from __future__ import annotations

import os

from torch import nn

from bisenet_core.modelfile import read_model_file
from bisenet_core.spec import ModelSpec
from bisenet_core.train.config import ConfigError


def load_init_weights(model: nn.Module, path: str | os.PathLike, spec: ModelSpec) -> list[str]:
    """Load the model file at `path` into `model` (built for `spec`); return the fresh keys.

    Raises ModelFileError if the file is unreadable, ConfigError if it holds another network
    or normalisation than `spec` (the message says which model.* keys to set).
    """
    state, source = read_model_file(path)
    differences = [f'{key} {getattr(source, key)!r} (run: {getattr(spec, key)!r})'
                   for key in ('backbone', 'architecture', 'mean', 'std')
                   if getattr(source, key) != getattr(spec, key)]
    if differences:
        raise ConfigError(f'model.init_from {path}: the file differs in {"; ".join(differences)}'
                          ': set those model.* keys to the file\'s (training.train --init-from '
                          'does)')
    target = model.state_dict()
    unknown = sorted(set(state) ^ set(target))
    if unknown:  # same backbone and architecture: only a damaged file gets here
        raise ConfigError(f'model.init_from {path}: keys do not match a {spec.backbone} '
                          f'{spec.architecture!r} network (e.g. {unknown[0]})')
    loaded = {k: v for k, v in state.items() if v.shape == target[k].shape}
    model.load_state_dict(loaded, strict=False)
    return sorted(set(target) - set(loaded))
