"""Conv+BatchNorm folding for inference: one convolution where there were two layers.

In eval mode a BatchNorm2d that directly follows a Conv2d is an affine map per channel,
y = (conv(x) - mean) * gamma / sqrt(var + eps) + beta, so it can be folded into the
convolution's weights and bias; the BatchNorm becomes an Identity. That removes a kernel
launch and a pass over the activations per layer (BiSeNet has about a hundred of them).

Which BatchNorm follows which Conv2d is found by running the model once and watching tensors
(forward hooks): a pair is folded only when the BatchNorm's input is exactly the Conv2d's
output, every time. A last check compares the logits before and after on the same input, so a
layout where a convolution's output is also used elsewhere cannot be folded silently wrong.
"""
from __future__ import annotations

import torch
from torch import nn

# Largest difference of the folded logits from the unfolded ones, relative to the largest
# logit, that counts as float rounding.
TOLERANCE = 1e-4


class FoldError(RuntimeError):
    """The folded model does not compute what the original did."""


def conv_bn_pairs(model: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """Names of (Conv2d, BatchNorm2d) pairs where the BatchNorm only ever reads that conv."""
    modules = dict(model.named_modules())
    names = {id(m): n for n, m in modules.items()}
    produced: dict[int, tuple[str, torch.Tensor]] = {}   # id(output) -> (conv, output)
    sources: dict[str, set[str]] = {}                     # batchnorm -> convs that fed it
    handles = []

    def after_conv(module, inputs, output):
        produced[id(output)] = (names[id(module)], output)  # keep it alive: ids stay unique

    def before_bn(module, inputs):
        found = produced.get(id(inputs[0]))
        feeder = found[0] if found is not None and found[1] is inputs[0] else None
        sources.setdefault(names[id(module)], set()).add(feeder)

    for module in modules.values():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(after_conv))
        elif isinstance(module, nn.BatchNorm2d):
            handles.append(module.register_forward_pre_hook(before_bn))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    pairs = [(next(iter(convs)), bn) for bn, convs in sources.items()
             if len(convs) == 1 and None not in convs]
    convs = [conv for conv, _ in pairs]
    # A conv feeding two BatchNorms cannot take both.
    return [(conv, bn) for conv, bn in pairs if convs.count(conv) == 1]


def fold_conv_bn(model: nn.Module, example: torch.Tensor) -> int:
    """Fold every BatchNorm2d into the Conv2d before it, in place; return how many.

    The model must be in eval mode (training needs the batch statistics) and `example` is a
    small input for tracing the pairs and checking the result (e.g. 1 x 3 x 64 x 64).
    Raises FoldError (and leaves the model unchanged) if the logits change by more than float
    rounding.
    """
    if model.training:
        raise ValueError('Conv+BN folding is for inference: call model.eval() first')
    with torch.no_grad():
        before = _logits(model(example))
    pairs = conv_bn_pairs(model, example)
    modules = dict(model.named_modules())
    undo = []
    for conv_name, bn_name in pairs:
        conv, bn = modules[conv_name], modules[bn_name]
        if not bn.track_running_stats or bn.running_var is None:
            continue  # uses batch statistics even in eval mode
        undo.append((conv_name, conv.weight.detach().clone(),
                     None if conv.bias is None else conv.bias.detach().clone(), bn_name, bn))
        _fold(conv, bn)
        _replace(model, bn_name, nn.Identity())
    with torch.no_grad():
        after = _logits(model(example))
    error = (after - before).abs().max() / before.abs().max().clamp(min=1e-12)
    if not error <= TOLERANCE:
        for conv_name, weight, bias, bn_name, bn in undo:
            conv = modules[conv_name]
            conv.weight.data.copy_(weight)
            conv.bias = None if bias is None else nn.Parameter(bias)
            _replace(model, bn_name, bn)
        raise FoldError(f'folding {len(undo)} BatchNorms changed the logits by {error:.2e} '
                        f'(relative); the model was left unfolded')
    return len(undo)


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    with torch.no_grad():
        scale = torch.rsqrt(bn.running_var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight
        shift = -bn.running_mean * scale
        if bn.bias is not None:
            shift = shift + bn.bias
        if conv.bias is not None:
            shift = shift + conv.bias * scale
        conv.weight.mul_(scale.reshape(-1, 1, 1, 1).to(conv.weight.dtype))
        conv.bias = nn.Parameter(shift.to(conv.weight.dtype))


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition('.')
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def _logits(output) -> torch.Tensor:
    return (output.logits if hasattr(output, 'logits') else output).float()
