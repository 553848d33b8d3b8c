"""SGD with the paper's settings and parameter groups.

Weight decay (1e-4) applies to conv/linear weights only, not to BatchNorm parameters or
biases (decaying them only fights normalisation). Everything outside the backbone, the
"head" (spatial path, ARMs, FFM, heads), can get a larger learning rate, as when the
backbone starts from ImageNet weights.
"""
from __future__ import annotations

import torch
from torch import nn


def param_groups(model: nn.Module, lr: float, weight_decay: float,
                 head_lr_multiplier: float = 1.0) -> list[dict]:
    """Four groups: backbone/head x decay/no-decay. Each group has a `name`."""
    model = getattr(model, 'module', model)  # DDP
    backbone_ids = {id(p) for p in model.context_path.backbone.parameters()}
    groups = {name: [] for name in ('backbone', 'backbone_no_decay', 'head', 'head_no_decay')}
    for module in model.modules():
        for pname, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            part = 'backbone' if id(param) in backbone_ids else 'head'
            # BatchNorm/GroupNorm weights and all biases are 1-D; conv/linear weights are not.
            no_decay = param.ndim <= 1 or pname == 'bias' or isinstance(
                module, (nn.modules.batchnorm._NormBase, nn.GroupNorm))
            groups[part + ('_no_decay' if no_decay else '')].append(param)
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
                    head_lr_multiplier: float = 1.0) -> torch.optim.SGD:
    """SGD with momentum over param_groups(model, ...)."""
    return torch.optim.SGD(param_groups(model, lr, weight_decay, head_lr_multiplier),
                           lr=lr, momentum=momentum, weight_decay=weight_decay)
