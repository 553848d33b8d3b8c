"""junit.xml: one test case per drive and one per criterion, for CI systems to show.

A drive's case errors when the drive could not be evaluated and fails when it breaks a
per-drive criterion (per_drive.miou, ab.max_drive_regression_points); a criterion's case
fails when it does not hold and is skipped when it needs a mode the run was not made in.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from bisenet_core.atomic import atomic_write_bytes
from bisenet_ros.fleet.criteria import drive_failures

SUITE = 'bisenet_ros.evaluate_drives'


def _value(value) -> str:
    return 'n/a' if value is None else f'{value:.4f}' if isinstance(value, float) else str(value)


def junit_xml(summary: dict) -> bytes:
    """The JUnit XML document of a summary."""
    cases = []
    failing = drive_failures(summary['criteria'])
    for drive in summary['drives']:
        case = ET.Element('testcase', classname=f'{SUITE}.drives', name=drive['name'],
                          time=f'{drive.get("seconds", 0.0):.3f}')
        if drive.get('error'):
            ET.SubElement(case, 'error', message=drive['error'], type='DriveError').text = (
                f'{drive["bag"]}: {drive["error"]}')
        elif drive['name'] in failing:
            message = (f'mIoU {_value(drive["miou"])} breaks '
                       f'{", ".join(failing[drive["name"]])}')
            ET.SubElement(case, 'failure', message=message, type='CriterionFailed').text = (
                message)
        else:
            ET.SubElement(case, 'system-out').text = (
                f'mIoU {_value(drive["miou"])}, {drive["frames_scored"]} frames scored')
        cases.append(case)
    for criterion in summary['criteria']:
        case = ET.Element('testcase', classname=f'{SUITE}.criteria', name=criterion['name'],
                          time='0')
        text = (f'{criterion["description"]}: {_value(criterion["value"])} '
                f'{criterion["op"]} {_value(criterion["threshold"])}')
        if criterion.get('skipped'):
            ET.SubElement(case, 'skipped', message=criterion['skipped'])
        elif not criterion['passed']:
            if criterion.get('failing_drives'):
                text += f' (drives: {", ".join(criterion["failing_drives"])})'
            ET.SubElement(case, 'failure', message=text, type='CriterionFailed').text = text
        else:
            ET.SubElement(case, 'system-out').text = text
        cases.append(case)
    suite = ET.Element('testsuite', name=SUITE, tests=str(len(cases)),
                       failures=str(sum(c.find('failure') is not None for c in cases)),
                       errors=str(sum(c.find('error') is not None for c in cases)),
                       skipped=str(sum(c.find('skipped') is not None for c in cases)))
    suite.extend(cases)
    root = ET.Element('testsuites', name=SUITE)
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding='utf-8', xml_declaration=True)


def write_junit(path: Path, summary: dict) -> Path:
    return atomic_write_bytes(junit_xml(summary), path)
