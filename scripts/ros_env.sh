# Source me: the environment every ROS 2 process of this project runs in.
# DDS discovery stays on this machine (LOCALHOST) and on a domain of its own, so that
# nothing multicasts onto other interfaces or talks to other people's nodes.
VENV=${VENV:-.venv}
venv_abs=$(cd "$VENV" && pwd)
export VIRTUAL_ENV="$venv_abs"
export PATH="$venv_abs/bin:$PATH"
if [ -z "${ROS_DISTRO:-}" ]; then
  # The venv is the ament prefix: launch files, config and executables are found there.
  export AMENT_PREFIX_PATH="$venv_abs${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
fi
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( ($$ % 90) + 10 ))}
export RMW_IMPLEMENTATION=${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}
# Shared memory large enough for camera frames (config/fastdds.xml; docs/node.md, "deploying on
# a vehicle"), for the node and for a camera driver started from this shell. A profile you set
# first wins. BISENET_FASTDDS_PROFILE=default keeps Fast DDS's own defaults: the variable is
# then unset, because an empty one makes every ROS process print "[XMLPARSER Error] realpath
# failed" (an empty one set before sourcing this is read as "default" too), and
# segment.launch.py leaves it unset for the node.
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ "${BISENET_FASTDDS_PROFILE:-}" = default ] || [ "${FASTDDS_DEFAULT_PROFILES_FILE-unset}" = "" ]; then
  unset FASTDDS_DEFAULT_PROFILES_FILE
  export BISENET_FASTDDS_PROFILE=default
else
  export FASTDDS_DEFAULT_PROFILES_FILE=${FASTDDS_DEFAULT_PROFILES_FILE:-$repo_root/config/fastdds.xml}
fi
