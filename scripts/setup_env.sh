#!/usr/bin/env bash
# Create or update the project's virtual environment (default .venv) and install everything
# the node, the tools and the tests need. Idempotent: a second run only checks.
#
# - With a sourced system ROS 2 (ROS_DISTRO set: Humble, Jazzy, Kilted), the venv sees the
#   system packages (rclpy, launch, cv_bridge, ...) and no ROS wheel is installed.
# - Without one, ROS 2 comes from the PyPI wheels (ros-rclpy, ...) plus the launch / ros2cli
#   wheels built from upstream sources in ../shared/wheels (SHARED_WHEELS to override).
# - torch: the CPU wheel by default (TORCH_SPEC, default torch==2.13.0); an unpinned torch
#   would pull gigabytes of CUDA libraries. onnxruntime-gpu replaces onnxruntime when
#   nvidia-smi finds a GPU.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
SHARED_WHEELS=${SHARED_WHEELS:-$root/../shared/wheels}
PY=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
  if [ -n "${ROS_DISTRO:-}" ]; then
    echo "setup: system ROS 2 '$ROS_DISTRO' found; venv $VENV uses its Python packages"
    "$PY" -m venv --system-site-packages "$VENV"
  else
    echo "setup: no ROS_DISTRO; venv $VENV gets ROS 2 from PyPI wheels + $SHARED_WHEELS"
    "$PY" -m venv "$VENV"
  fi
fi
pip=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)

extras=dev
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  extras="$extras,gpu"
else
  extras="$extras,cpu"
fi
if [ -z "${ROS_DISTRO:-}" ]; then
  extras="$extras,ros"
fi

"${pip[@]}" "$TORCH_SPEC"
"${pip[@]}" -e ".[$extras]"
# An editable install leaves out setup.py's data_files, so lay out the ament prefix by hand, as
# links into this checkout: `ros2 launch` then finds the package in the venv and always sees the
# current launch/, config/ and models/ (a non-editable pip install or colcon build copies them).
venv_abs=$(cd "$VENV" && pwd)
share="$venv_abs/share/bisenet_ros"
mkdir -p "$venv_abs/share/ament_index/resource_index/packages" "$share" "$venv_abs/lib/bisenet_ros"
ln -sfn "$root/resource/bisenet_ros" "$venv_abs/share/ament_index/resource_index/packages/bisenet_ros"
for item in package.xml config models; do ln -sfn "$root/$item" "$share/$item"; done
# launch/ as a real folder of links: `ros2 launch` finds files with os.walk, which does not
# descend into a linked folder.
[ -L "$share/launch" ] && rm "$share/launch"
mkdir -p "$share/launch"
for f in "$root"/launch/*.launch.py; do ln -sfn "$f" "$share/launch/$(basename "$f")"; done
for exe in "$root"/scripts/lib/*; do ln -sfn "$exe" "$venv_abs/lib/bisenet_ros/$(basename "$exe")"; done
if [ -z "${ROS_DISTRO:-}" ]; then
  if ! ls "$SHARED_WHEELS"/*.whl >/dev/null 2>&1; then
    echo "setup: no launch/ros2cli wheels in $SHARED_WHEELS (set SHARED_WHEELS)" >&2
    exit 1
  fi
  "${pip[@]}" --no-deps "$SHARED_WHEELS"/*.whl
fi
echo "setup: ready ($VENV, extras: $extras)"
