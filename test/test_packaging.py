"""The package installs like an ament_python package, and imports go one way."""
import ast
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_package_xml_is_format3_ament_python_with_runtime_deps():
    root = ET.parse(ROOT / 'package.xml').getroot()
    assert root.get('format') == '3'
    assert root.findtext('name') == 'bisenet_ros'
    assert root.find('export/build_type').text == 'ament_python'
    deps = {e.text for e in root.findall('exec_depend')}
    for dep in ('rclpy', 'sensor_msgs', 'diagnostic_msgs', 'std_msgs', 'python3-numpy',
                'python3-opencv'):
        assert dep in deps, dep
    assert any('torch' in d for d in deps) and any('onnxruntime' in d for d in deps)


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp('wheel')
    build = tmp_path_factory.mktemp('build')
    # Offline (CI runs the tests without network): use the venv's setuptools and wheel.
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation',
                    '--no-index', '-q', '-w', str(out), str(ROOT)],
                   check=True, cwd=build, capture_output=True)
    (whl,) = out.glob('bisenet_ros-*.whl')
    return zipfile.ZipFile(whl)


def test_wheel_installs_ament_layout(wheel):
    names = set(wheel.namelist())
    data = next(n.split('/')[0] for n in names if '.data/' in n)
    expected = [
        'share/ament_index/resource_index/packages/bisenet_ros',
        'share/bisenet_ros/package.xml',
        'share/bisenet_ros/launch/segment.launch.py',
        'share/bisenet_ros/config/segment.yaml',
        'lib/bisenet_ros/segment_node',
        'lib/bisenet_ros/replay',
    ]
    for rel in expected:
        assert f'{data}/data/{rel}' in names, rel
    for exe in ('segment_node', 'replay'):
        mode = wheel.getinfo(f'{data}/data/lib/bisenet_ros/{exe}').external_attr >> 16
        assert mode & stat.S_IXUSR, f'{exe} is not executable in the wheel'
    assert any(n.startswith('bisenet_core/') for n in names)
    assert any(n.startswith('training/') for n in names)


def _imported_modules(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name.split('.')[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module.split('.')[0]


def test_core_imports_no_ros_and_nothing_above_it():
    forbidden = {'rclpy', 'sensor_msgs', 'diagnostic_msgs', 'std_msgs', 'launch', 'launch_ros',
                 'cv_bridge', 'bisenet_ros', 'training'}
    files = sorted((ROOT / 'bisenet_core').rglob('*.py'))
    assert files
    for path in files:
        bad = forbidden.intersection(_imported_modules(path))
        assert not bad, f'{path.relative_to(ROOT)} imports {sorted(bad)}'


def test_training_does_not_import_ros():
    for path in sorted((ROOT / 'training').rglob('*.py')):
        bad = {'rclpy', 'bisenet_ros'}.intersection(_imported_modules(path))
        assert not bad, f'{path.relative_to(ROOT)} imports {sorted(bad)}'


# Optional third-party packages a core module may import where it needs them (the core
# imports without them): inference backends, plots, timm's .safetensors weight files.
LAZY_OPTIONAL = {'onnxruntime', 'tensorrt', 'matplotlib', 'safetensors'}


def _function_level_imports(path: Path):
    """(line, module) of every import inside a function body of the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()  # a nested function's imports are also inside the outer one
    for function in ast.walk(tree):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Import):
                found.update((node.lineno, a.name) for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                # A relative import (level > 0) is one between the core's own modules.
                found.add((node.lineno,
                           ('bisenet_core.' if node.level else '') + (node.module or '')))
    return sorted(found)


def test_core_has_no_function_level_imports():
    """No import inside a core function, but of an optional third-party package.

    A function-level import between core modules hides an import cycle: move the shared
    piece so the arrows point one way.
    """
    files = sorted((ROOT / 'bisenet_core').rglob('*.py'))
    assert len(files) > 40
    found = [f'{path.relative_to(ROOT)}:{line}: {module}' for path in files
             for line, module in _function_level_imports(path)
             if module.split('.')[0] not in LAZY_OPTIONAL]
    assert not found, 'function-level imports:\n' + '\n'.join(found)


def test_function_level_import_finder_sees_nested_and_relative_imports(tmp_path):
    source = tmp_path / 'sample.py'
    source.write_text('import os\n\n\ndef f():\n    import onnxruntime\n\n    def g():\n'
                      '        from bisenet_core.spec import ModelSpec\n        from . import x\n'
                      '\n\nclass C:\n    def m(self):\n        import torch.distributed\n')
    assert list(_function_level_imports(source)) == [
        (5, 'onnxruntime'), (8, 'bisenet_core.spec'), (9, 'bisenet_core.'),
        (14, 'torch.distributed')]
