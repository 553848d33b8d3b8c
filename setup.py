"""bisenet_ros: BiSeNet real-time semantic segmentation as a ROS 2 (ament_python) package.

Installs the pure-Python core (`bisenet_core`), the ROS 2 node (`bisenet_ros`) and the
offline tools (`training`). Besides the Python packages it installs, as a colcon build does,
the ament index marker, package.xml, launch/ and config/ under share/bisenet_ros and the
node executables under lib/bisenet_ros, so `ros2 launch bisenet_ros segment.launch.py`
works after a colcon build and after `pip install` into a virtual environment.
"""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'bisenet_ros'


def share(subdir: str, pattern: str):
    files = sorted(glob(pattern))
    return [(f'share/{PACKAGE}/{subdir}', files)] if files else []


setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(include=['bisenet_core', 'bisenet_core.*', 'bisenet_ros',
                                    'bisenet_ros.*', 'training', 'training.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', [f'resource/{PACKAGE}']),
        (f'share/{PACKAGE}', ['package.xml']),
        *share('launch', 'launch/*.launch.py'),
        *share('config', 'config/*.yaml'),
        *share('config', 'config/*.xml'),
        *share('config/train', 'config/train/*.yaml'),
        *share('config/criteria', 'config/criteria/*.yaml'),
        *share('models', 'models/*'),
        # ros2 launch / ros2 run look for executables in lib/<package>; these small
        # launchers work both in a venv (pip) and in a colcon install space.
        (f'lib/{PACKAGE}', sorted(glob('scripts/lib/*'))),
    ],
    python_requires='>=3.10',
    install_requires=[
        'numpy>=1.23',
        'opencv-python-headless>=4.8',
        'pyyaml>=6',
        'onnx>=1.15',
        'tqdm>=4.60',
        'matplotlib>=3.7',
        'rosbags>=0.10',
        # torch: the set-up script installs the wanted build first (CPU wheel by default).
        'torch>=2.1',
    ],
    extras_require={
        'cpu': ['onnxruntime>=1.17'],
        'gpu': ['onnxruntime-gpu>=1.17'],
        # The launch/ros2cli wheels are installed --no-deps (setup_env.sh); what they import
        # is listed here: psutil for `ros2 node/param/topic`.
        'ros': ['ros-rclpy', 'ros-sensor-msgs', 'ros-diagnostic-msgs', 'ros-std-msgs',
                'ros-rmw-fastrtps-cpp', 'osrf-pycommon', 'lark', 'psutil>=5.8'],
        'dev': ['pytest>=7,<8.4', 'flake8>=6', 'pydocstyle>=6', 'wheel'],
    },
    zip_safe=True,
    maintainer='bisenet-ros developers',
    maintainer_email='dev@bisenet-ros.invalid',
    description=('BiSeNet real-time semantic segmentation: model, training, export and a '
                 'ROS 2 node.'),
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'segment_node = bisenet_ros.segment_node:main',
            'replay = bisenet_ros.replay:main',
            'evaluate_drives = bisenet_ros.evaluate_drives:main',
        ],
    },
)
