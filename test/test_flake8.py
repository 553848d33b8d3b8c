"""Code style of the whole project as tests, like the ament_python template's flake8/pep257 tests.

flake8 reads setup.cfg ([flake8]: max-line-length 100, excludes). The docstring check is
pydocstyle's pep257 convention with ament_pep257's ignores (missing docstrings D100-D107,
D404) plus D401: summaries here are noun phrases ("The shipped model: ...") by choice.
"""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXCLUDED = ('.venv', 'build', 'install', 'log', 'out')
PEP257_IGNORES = 'D100,D101,D102,D103,D104,D105,D106,D107,D404,D401'


def _run(module, *args):
    pytest.importorskip(module)
    proc = subprocess.run([sys.executable, '-m', module, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def test_flake8():
    code, report = _run('flake8', '--max-line-length', '100', '--exclude', ','.join(EXCLUDED),
                        '.')
    assert code == 0, f'flake8 found problems:\n{report}'


def test_pep257():
    skip_dirs = '|'.join(d.replace('.', r'\.') for d in EXCLUDED)
    code, report = _run('pydocstyle', '--convention=pep257', f'--add-ignore={PEP257_IGNORES}',
                        f'--match-dir=^(?!({skip_dirs})$|\\.).*', '.')
    assert code == 0, f'pydocstyle found problems:\n{report}'
