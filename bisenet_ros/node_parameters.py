"""segment_node's parameters: declarations, checks and one-line errors.

PARAMETERS is the table of declarations (name, default, descriptor); the checks run at
start-up and at `ros2 param set`.

config/segment.yaml and launch/segment.launch.py repeat the defaults for the user to read;
test/test_launch.py checks that they equal PARAMETERS.
"""
from __future__ import annotations

import math
import re

from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                ParameterType)
from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

from bisenet_core.inference.backends import BACKENDS, DEVICES, PRECISIONS, check_device
from bisenet_core.inference.postprocess import UPSAMPLE_MODES
from bisenet_core.spec import MAX_INPUT_SIDE
from bisenet_ros.node_outputs import OUTPUT_PARAMETERS
from bisenet_ros.node_process import StartupError

# Bilinear logits: +10 mIoU points over nearest labels on the 480x360 demo drive, ~3 ms.
DEFAULT_UPSAMPLE = 'bilinear'
# best_available: reliable when every matched publisher is (a reliable camera driver or a bag
# replay: no frame lost in DDS), best effort otherwise (still matches a best-effort camera).
RELIABILITY = {'best_available': ReliabilityPolicy.BEST_AVAILABLE,
               'reliable': ReliabilityPolicy.RELIABLE,
               'best_effort': ReliabilityPolicy.BEST_EFFORT}
DURABILITY = {'volatile': DurabilityPolicy.VOLATILE,
              'transient_local': DurabilityPolicy.TRANSIENT_LOCAL}
CHOICES = {'backend': BACKENDS, 'precision': PRECISIONS,
           'upsample': UPSAMPLE_MODES, 'qos_reliability': tuple(RELIABILITY),
           'qos_durability': tuple(DURABILITY)}
# 8192 x 8192: an 8K camera (7680 x 4320) fits with room to spare.
DEFAULT_MAX_IMAGE_PIXELS = 8192 * 8192
# Frames DDS may hold until the executor thread takes them: with 1, a frame arriving while
# the executor is busy replaces the previous one in DDS (measured: 2-10 % of the frames of a
# 30 Hz camera on a loaded 2-core CPU; 0.1-0.2 % with 5). The node still infers only the
# newest frame, so latency does not grow with the depth.
DEFAULT_QOS_DEPTH = 5
MAX_QOS_DEPTH = 100


def param_descriptor(description: str, choices: tuple[str, ...] | None = None,
                     read_only: bool = True, integer_range: IntegerRange | None = None,
                     float_range: FloatingPointRange | None = None) -> ParameterDescriptor:
    """A descriptor whose description names the choices and whether a restart is needed."""
    if choices:
        description += f' ({"|".join(choices)})'
    if read_only:
        description += '; read-only: needs a restart'
    return ParameterDescriptor(
        description=description, read_only=read_only,
        additional_constraints=f'one of {", ".join(choices)}' if choices else '',
        integer_range=[integer_range] if integer_range else [],
        floating_point_range=[float_range] if float_range else [])


def size_range() -> IntegerRange:
    # 0 = the model's own input size; the Segmenter refuses 1..31 with a clear message.
    return IntegerRange(from_value=0, to_value=MAX_INPUT_SIDE, step=1)


PARAMETERS: tuple[tuple[str, object, ParameterDescriptor], ...] = (
    ('model_path', '', param_descriptor(
        'BiSeNet model file (.pt or .onnx); empty = the shipped model')),
    ('backend', 'auto', param_descriptor('inference backend', BACKENDS)),
    ('device', 'auto', param_descriptor('inference device', (*DEVICES, 'cuda:N'))),
    ('precision', 'fp32', param_descriptor('fp16 needs a GPU (fp32 on the CPU)', PRECISIONS)),
    ('input_width', 0, param_descriptor(
        "network input width (multiple of 32: no padding); 0 = the model's own",
        integer_range=size_range())),
    ('input_height', 0, param_descriptor(
        "network input height (multiple of 32: no padding); 0 = the model's own",
        integer_range=size_range())),
    ('upsample', DEFAULT_UPSAMPLE, param_descriptor(
        'labels to image size: nearest (argmax at 1/8, fast) or bilinear (smoother '
        'boundaries, slower)', UPSAMPLE_MODES, read_only=False)),
    *((name, default, param_descriptor(description, read_only=False))
      for name, (default, description) in OUTPUT_PARAMETERS.items()),
    ('use_compressed', False, param_descriptor(
        'subscribe to image/compressed (jpeg/png) instead of image')),
    ('compile', False, param_descriptor(
        'torch.compile the network (backend torch; mostly for GPUs): compiling takes '
        'tens of seconds at start-up, before the first frame')),
    ('qos_reliability', 'best_available', param_descriptor(
        'input QoS reliability: best_available (reliable if the publisher is, so '
        'large frames are repaired; still matches a best-effort camera), reliable or '
        'best_effort', tuple(RELIABILITY))),
    ('qos_depth', DEFAULT_QOS_DEPTH, param_descriptor(
        'input QoS history depth: frames that may wait in DDS for the executor (the '
        'node itself keeps only the newest for inference)',
        integer_range=IntegerRange(from_value=1, to_value=MAX_QOS_DEPTH, step=1))),
    ('qos_durability', 'volatile', param_descriptor(
        'input QoS durability (transient_local: also gets the last frame a latched '
        'publisher sent before the node started)', tuple(DURABILITY))),
    ('max_image_pixels', DEFAULT_MAX_IMAGE_PIXELS, param_descriptor(
        'frames with more pixels (width x height, read from the header before '
        'decoding) are refused as bad input; 0 = no limit',
        integer_range=IntegerRange(from_value=0, to_value=2**40, step=1))),
    ('batch_window_ms', 0.0, param_descriptor(
        'several cameras: 0 = the worker takes the frames waiting at once (no camera waits '
        'for another); > 0 = after the first frame it waits up to this long for the other '
        'sending cameras, to batch them',
        float_range=FloatingPointRange(from_value=0.0, to_value=10000.0, step=0.0))),
    ('camera_timeout_s', 3.0, param_descriptor(
        'several cameras: a camera that sent no frame for this long (or none yet) turns its '
        'diagnostics WARN; 0 = off',
        float_range=FloatingPointRange(from_value=0.0, to_value=3600.0, step=0.0))),
    ('latency_budget_ms', 100.0, param_descriptor(
        'diagnostics WARN when the end-to-end latency p90 exceeds this; 0 = off',
        read_only=False, float_range=FloatingPointRange(from_value=0.0, to_value=60000.0,
                                                        step=0.0))),
)
DEFAULTS = {name: default for name, default, _ in PARAMETERS}
RUNTIME_PARAMETERS = tuple(name for name, _, descriptor in PARAMETERS
                           if not descriptor.read_only)


def check_startup_parameters(params: dict) -> None:
    """Raise StartupError (one line) for values the node cannot start with."""
    for name, choices in CHOICES.items():
        if params[name] not in choices:
            raise StartupError(f'parameter {name}={params[name]!r}: must be one of '
                               f'{", ".join(choices)}')
    try:
        check_device(params['device'])
    except ValueError as exc:
        raise StartupError(f'parameter device={params["device"]!r}: {exc}') from None
    if (params['input_width'] == 0) != (params['input_height'] == 0):
        raise StartupError(f'input_width={params["input_width"]}, input_height='
                           f'{params["input_height"]}: set both or neither (0 = the '
                           "model's own size)")


def runtime_refusal(param) -> str:
    """Why `ros2 param set` must refuse this value ('' if it may be applied)."""
    if param.name not in RUNTIME_PARAMETERS:
        return f'{param.name} is read-only: it needs a restart'
    choices = CHOICES.get(param.name)
    if choices and param.value not in choices:
        return f'{param.name}={param.value!r}: must be one of {", ".join(choices)}'
    if param.name in OUTPUT_PARAMETERS and param.type_ != ParameterType.PARAMETER_BOOL:
        return f'{param.name} must be true or false'
    if param.name == 'latency_budget_ms' and (
            param.type_ != ParameterType.PARAMETER_DOUBLE or not math.isfinite(param.value)
            or param.value < 0):
        return f'latency_budget_ms={param.value!r}: must be a float >= 0'
    return ''


TYPE_NAMES = {'STRING': 'a string', 'INTEGER': 'an integer', 'DOUBLE': 'a float',
              'BOOL': 'a bool'}


def parameter_error(name: str, descriptor: ParameterDescriptor, exc: Exception) -> str:
    """One line naming the parameter, the value given and why it cannot be used."""
    message = ' '.join(str(exc).split())
    # rclpy's messages: "Invalid parameter value (-32) for parameter. Reason: ... out of
    # range ..." and "Trying to set parameter 'x' to 'abc' of type 'STRING', expecting type
    # 'INTEGER'"; the exceptions carry no fields, so the value is read back from them.
    type_error = re.search(r"to '(.*)' of type '(\w+)', expecting type '(\w+)'", message)
    if type_error:
        value, given, expected = type_error.groups()
        return (f'parameter {name}={value!r}: {TYPE_NAMES.get(given, given)} where '
                f'{TYPE_NAMES.get(expected, expected)} is expected ({descriptor.description})')
    ranges = descriptor.integer_range or descriptor.floating_point_range
    value_error = re.search(r'Invalid parameter value \((.*?)\) for parameter', message)
    if ranges and value_error and 'out of range' in message:
        return (f'parameter {name}={value_error.group(1)}: out of range '
                f'{ranges[0].from_value:g}..{ranges[0].to_value:g} ({descriptor.description})')
    return f'parameter {name}: {message}'
