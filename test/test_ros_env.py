"""scripts/ros_env.sh, seen from a ROS process started after sourcing it: which Fast DDS
profile the process gets, and that keeping Fast DDS's defaults prints no XMLPARSER error."""
import subprocess
import sys
from pathlib import Path

import pytest

from bisenet_ros.ros_env import fresh_domain_id, ros_child_env

pytest.importorskip('rclpy')

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / 'config' / 'fastdds.xml'
# A participant is what reads the profile (and what printed "[XMLPARSER Error] realpath
# failed" when the variable was empty).
PROBE = ("import os, rclpy; rclpy.init(); node = rclpy.create_node('ros_env_probe'); "
         "node.destroy_node(); rclpy.shutdown(); "
         "print('profile=' + os.environ.get('FASTDDS_DEFAULT_PROFILES_FILE', '<unset>')); "
         "print('choice=' + os.environ.get('BISENET_FASTDDS_PROFILE', '<unset>'))")


def sourced(settings: str) -> tuple[str, str, str]:
    """`settings; source scripts/ros_env.sh; python PROBE` in bash: (profile, choice, output)."""
    env = ros_child_env(fresh_domain_id())
    for name in ('FASTDDS_DEFAULT_PROFILES_FILE', 'BISENET_FASTDDS_PROFILE'):
        env.pop(name, None)
    env['VENV'] = sys.prefix
    script = f'{settings}\nsource scripts/ros_env.sh\n"{sys.executable}" -c "{PROBE}"'
    result = subprocess.run(['bash', '-c', script], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    values = dict(line.split('=', 1) for line in result.stdout.splitlines() if '=' in line)
    return values['profile'], values['choice'], output


@pytest.mark.parametrize('settings', [
    'export BISENET_FASTDDS_PROFILE=default',  # the documented way
    'export FASTDDS_DEFAULT_PROFILES_FILE=',   # the way docs named before: still works
])
def test_fast_dds_defaults_without_an_xmlparser_error(settings):
    profile, choice, output = sourced(settings)
    assert 'XMLPARSER' not in output and 'realpath failed' not in output
    assert profile == '<unset>' and choice == 'default'  # segment.launch.py reads the choice


def test_the_shipped_profile_unless_one_is_set(tmp_path):
    profile, choice, output = sourced('')
    assert profile == str(SHIPPED) and choice == '<unset>'
    own = tmp_path / 'own_profile.xml'
    own.write_text(SHIPPED.read_text())
    profile, choice, output = sourced(f'export FASTDDS_DEFAULT_PROFILES_FILE={own}')
    assert profile == str(own) and 'XMLPARSER' not in output
