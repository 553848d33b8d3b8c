"""Where the shipped model lives: the installed package share dir, else this checkout."""
from __future__ import annotations

from pathlib import Path

PACKAGE = 'bisenet_ros'
DEFAULT_MODEL_NAME = 'bisenet_xception39_synthetic.pt'
REPO_ROOT = Path(__file__).resolve().parent.parent


def share_dir() -> Path | None:
    """share/bisenet_ros of the ament prefix this package is installed in, or None."""
    try:
        from ament_index_python.packages import (PackageNotFoundError,
                                                 get_package_share_directory)
    except ImportError:
        return None
    try:
        return Path(get_package_share_directory(PACKAGE))
    except (PackageNotFoundError, ValueError, LookupError, OSError):  # OSError: no prefix path
        return None


def default_model_path() -> Path:
    """The shipped model: share/bisenet_ros/models/ if installed there, else the repo's models/.

    The path is returned even if the file is missing, so the node's error names it.
    """
    share = share_dir()
    if share is not None and (share / 'models' / DEFAULT_MODEL_NAME).is_file():
        return share / 'models' / DEFAULT_MODEL_NAME
    return REPO_ROOT / 'models' / DEFAULT_MODEL_NAME
