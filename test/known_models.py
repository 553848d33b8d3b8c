"""Tiny models whose labels say what the network was fed, for tests with hand-known answers.

They go through the public `Segmenter.from_model`, so the tests hold whatever the Segmenter
does inside (resizing, colour conversion, normalisation) between the image and the model.
"""
import torch
import torch.nn.functional as F
from torch import nn

from bisenet_core.model.bisenet import BiSeNetOutput
from bisenet_core.spec import spec_for_classes

# Label ids of ChannelModel, by what the network saw in an 8 x 8 block.
RED, GREEN, BLUE, GRAY = range(4)
CHANNEL_SPEC = spec_for_classes(['red', 'green', 'blue', 'gray'], input_size=(64, 32))


class ChannelModel(nn.Module):
    """Labels each 8 x 8 block by the brightest channel the network received.

    Channel 0 -> RED, 1 -> GREEN, 2 -> BLUE, or GRAY where all three are equal (output
    stride 8). It undoes the spec's normalisation, so for a correct pipeline the label is the
    image's true colour: a pure red pixel gives RED whatever byte order it arrived in.

    `failures_left` (a class attribute: the Segmenter works on a deep copy of the model)
    makes that many forward calls raise, as an inference that fails would.
    """

    failures_left = 0

    def __init__(self, spec=CHANNEL_SPEC):
        super().__init__()
        self.num_classes = spec.num_classes
        self.register_buffer('mean', torch.tensor(spec.mean).view(1, 3, 1, 1))
        self.register_buffer('std', torch.tensor(spec.std).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> BiSeNetOutput:
        if ChannelModel.failures_left > 0:
            ChannelModel.failures_left -= 1
            raise RuntimeError('injected inference failure')
        colour = F.avg_pool2d(x.float() * self.std + self.mean, 8, ceil_mode=True)  # [0, 1]
        spread = colour.amax(1, keepdim=True) - colour.amin(1, keepdim=True)
        gray = 1.2 - 10.0 * spread  # beats every channel (<= 1) only where they agree
        return BiSeNetOutput(torch.cat([colour, gray], 1), ())


class InputRecorder(nn.Module):
    """Passes its input to `inner` and appends a copy of it to the class list `inputs`."""

    inputs: list = []

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.num_classes = inner.num_classes

    def forward(self, x: torch.Tensor):
        InputRecorder.inputs.append(x.detach().float().cpu().clone())
        return self.inner(x)
