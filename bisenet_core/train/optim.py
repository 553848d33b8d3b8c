"""SGD with the paper's settings and parameter groups.

Weight decay applies to conv/linear weights only, not to BatchNorm parameters or biases
(decaying them only fights normalisation; TorchSeg's `group_weight` does the same). Parts
of the network outside the backbone can get a larger learning rate: TorchSeg gives 10x to
everything outside the ResNet backbones, but only to the FFM and the heads with Xception39
(model/bisenet/cityscapes.bisenet.{R18,X39}/train.py, `group_weight(..., base_lr * 10)`).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

# The parts `train.head_lr_parts` can name (the backbone always trains at the base lr).
HEAD_PARTS = ('spatial_path', 'context', 'ffm', 'heads')


def model_part(parameter_name: str) -> str:
    """'backbone' or one of HEAD_PARTS for a BiSeNet parameter name (as named_parameters)."""
    if parameter_name.startswith('context_path.backbone.'):
        return 'backbone'
    if parameter_name.startswith('context_path.'):
        return 'context'    # global context, ARMs, refine convs
    if parameter_name.startswith('spatial_path.'):
        return 'spatial_path'
    if parameter_name.startswith('ffm.'):
        return 'ffm'
    return 'heads'          # head, aux_head16, aux_head32


def param_groups(model: nn.Module, lr: float, weight_decay: float,
                 head_lr_multiplier: float = 1.0,
                 head_lr_parts: Sequence[str] = HEAD_PARTS) -> list[dict]:
    """Up to four parameter groups, each with a `name`.

    'base' (lr) and 'head' (head_lr_multiplier x lr: the parameters of head_lr_parts), each
    also as '..._no_decay' (BatchNorm and biases).
    """
    unknown = set(head_lr_parts) - set(HEAD_PARTS)
    if unknown:
        raise ValueError(f'unknown head_lr_parts {sorted(unknown)}; choose from {HEAD_PARTS}')
    model = getattr(model, 'module', model)  # DDP
    part_of = {id(p): model_part(name) for name, p in model.named_parameters()}
    groups = {name: [] for name in ('base', 'base_no_decay', 'head', 'head_no_decay')}
    for module in model.modules():
        for pname, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            group = 'head' if part_of[id(param)] in head_lr_parts else 'base'
            # BatchNorm/GroupNorm weights and all biases are 1-D; conv/linear weights are not.
            no_decay = param.ndim <= 1 or pname == 'bias' or isinstance(
                module, (nn.modules.batchnorm._NormBase, nn.GroupNorm))
            groups[group + ('_no_decay' if no_decay else '')].append(param)
    result = []
    for name, params in groups.items():
        if not params:
            continue
        result.append({
            'name': name,
            'params': params,
            'lr': lr * (head_lr_multiplier if name.startswith('head') else 1.0),
            'weight_decay': 0.0 if name.endswith('no_decay') else weight_decay,
        })
    return result


def build_optimizer(model: nn.Module, lr: float, momentum: float, weight_decay: float,
                    head_lr_multiplier: float = 1.0,
                    head_lr_parts: Sequence[str] = HEAD_PARTS) -> torch.optim.SGD:
    """SGD with momentum over param_groups(model, ...)."""
    return torch.optim.SGD(param_groups(model, lr, weight_decay, head_lr_multiplier,
                                        head_lr_parts),
                           lr=lr, momentum=momentum, weight_decay=weight_decay)
