"""Pieces segment_node declares its parameters with: descriptors and one-line refusals.

`param_descriptor` builds a ParameterDescriptor (description naming the choices, read-only
flag, integer or float range); `parameter_error` turns rclpy's refusal of a value into one
line naming the parameter, the value and the allowed range or type. The declarations
themselves (names, defaults) are in segment_node.py.
"""
from __future__ import annotations

import re

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from bisenet_core.spec import MAX_INPUT_SIDE


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
