"""diagnostic_msgs/DiagnosticArray for the segmentation node: level, message and values."""
from __future__ import annotations

import math
from typing import Mapping, Sequence

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

OK = DiagnosticStatus.OK
WARN = DiagnosticStatus.WARN
ERROR = DiagnosticStatus.ERROR
LEVEL_NAMES = {OK: 'OK', WARN: 'WARN', ERROR: 'ERROR'}


def node_level(errors: int, dropped: int, latency_ms: float, budget_ms: float,
               last_error: str = '', lost: int = 0, missed: int = 0,
               incompatible: int = 0, notes: Sequence[str] = ()) -> tuple[int, str]:
    """(level, message) for one diagnostics period.

    Args:
        errors: bad inputs or failed inferences in the period (any -> ERROR).
        dropped: frames replaced before they were processed in the period (any -> WARN).
        latency_ms: end-to-end (stamp -> publish) p90 of the period's frames; over a positive
            budget_ms -> WARN. NaN (no frame in the period) never warns.
        lost: frames the middleware reported lost in the period (any -> WARN).
        missed: frames the publisher sent that never arrived (publication sequence gaps, a
            superset of `lost`; any -> WARN).
        incompatible: publishers on the input topic whose QoS cannot match (any -> WARN).
        notes: other problems of the inputs seen now (WARN), e.g. a publisher of another type.
    """
    if errors:
        return ERROR, f'{errors} bad input(s) or failed inference(s); last: {last_error}'
    problems = []
    if lost or missed:
        problems.append(f'{max(lost, missed)} frame(s) from the camera never reached the node '
                        f'({lost} reported lost by DDS, the rest replaced in the input queue '
                        'or lost silently): see docs/node.md, "deploying on a vehicle"')
    if incompatible:
        problems.append(f'{incompatible} publisher(s) with incompatible QoS: their frames '
                        'never arrive')
    problems += notes
    if budget_ms > 0 and not math.isnan(latency_ms) and latency_ms > budget_ms:
        problems.append(f'latency p90 {latency_ms:.1f} ms over budget {budget_ms:g} ms')
    if dropped:
        problems.append(f'dropped {dropped} frame(s): inference slower than the input')
    if problems:
        return WARN, '; '.join(problems)
    return OK, 'ok'


def format_value(value) -> str:
    """Diagnostic values are strings: floats with 2 decimals, NaN as 'nan'."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return 'nan' if math.isnan(value) else f'{value:.2f}'
    return str(value)


def diagnostic_status(name: str, hardware_id: str, level: int, message: str,
                      values: Mapping[str, object]) -> DiagnosticStatus:
    status = DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id)
    status.values = [KeyValue(key=key, value=format_value(v)) for key, v in values.items()]
    return status


def build_diagnostic_array(stamp, statuses: Sequence[DiagnosticStatus]) -> DiagnosticArray:
    """The statuses (one per camera) in a DiagnosticArray stamped `stamp`."""
    array = DiagnosticArray()
    array.header.stamp = stamp
    array.status = list(statuses)
    return array
