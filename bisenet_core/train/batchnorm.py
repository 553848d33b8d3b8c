"""BatchNorm during training: how many images its statistics see, and freezing them.

BiSeNet applies BatchNorm not only to feature maps but also to globally pooled 1x1 vectors
(the ARM attention and the global-context conv): there, the statistics of a channel come
from one value per image, so a micro-batch of 2 gives a mean and variance of 2 numbers.
Gradient accumulation keeps the *gradient* batch at train.batch_size but not the BatchNorm
batch, which is the micro-batch of one process, or the micro-batch times the processes when
SyncBatchNorm joins them (CUDA, several processes, train.sync_bn). The authors trained with
16 images per step over SyncBatchNorm (TorchSeg config.py: batch_size 16, sync_bn True).
"""
from __future__ import annotations

from torch import nn

# Below this many images per BatchNorm statistic, training warns (docs/training.md).
MIN_BATCHNORM_BATCH = 8


def batchnorm_batch(micro_batch: int, processes: int, synced: bool) -> int:
    """Images one BatchNorm statistic is computed over in a training forward pass."""
    return micro_batch * processes if synced else micro_batch


def small_batchnorm_warning(micro_batch: int, processes: int, synced: bool,
                            grad_accum: int) -> str:
    """The one-line warning text for a BatchNorm batch below MIN_BATCHNORM_BATCH."""
    joined = f' x {processes} processes joined by SyncBatchNorm' if synced else ''
    return (f'BatchNorm statistics cover {batchnorm_batch(micro_batch, processes, synced)} '
            f'image(s) ({micro_batch} per process{joined}; grad_accum {grad_accum} does not '
            f'enlarge them), fewer than {MIN_BATCHNORM_BATCH}: they get noisy, above all on the '
            'pooled vectors of the ARMs and the global context. Use more GPUs with '
            'train.sync_bn, a smaller train.grad_accum, or train.freeze_bn when fine-tuning '
            '(docs/training.md)')


def freeze_batchnorm(model: nn.Module) -> int:
    """Put every BatchNorm layer in eval mode; return the number of layers frozen.

    Running statistics are then used and not updated; the affine weight and bias still train.
    """
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for layer in layers:
        layer.eval()
    return len(layers)


def set_train_mode(model: nn.Module, freeze_bn: bool = False) -> nn.Module:
    """model.train(), keeping BatchNorm frozen if asked."""
    model.train()
    if freeze_bn:
        freeze_batchnorm(model)
    return model
