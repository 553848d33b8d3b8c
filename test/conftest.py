"""Shared fixtures. Every ROS 2 participant a test creates stays on loopback, on its own domain."""
import os
import random

import pytest

# Set before any test imports rclpy: discovery only on this machine, a domain of our own.
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.setdefault('ROS_DOMAIN_ID', str(random.Random(os.getpid()).randint(10, 99)))


@pytest.fixture(scope='module')
def context():
    """An rclpy context of the test module's own, on this process's domain."""
    rclpy = pytest.importorskip('rclpy')
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=int(os.environ['ROS_DOMAIN_ID']))
    yield ctx
    ctx.try_shutdown()


@pytest.fixture(scope='session')
def tiny_model_file(tmp_path_factory):
    """A randomly initialised Xception39 BiSeNet with the CamVid classes at 128x96 input."""
    import torch

    from bisenet_core.model import bisenet
    from bisenet_core.modelfile import save_model
    from bisenet_core.spec import spec_for_dataset

    torch.manual_seed(0)
    spec = spec_for_dataset('camvid', backbone='xception39', input_size=(128, 96))
    model = bisenet(spec.num_classes, backbone=spec.backbone).eval()
    path = tmp_path_factory.mktemp('models') / 'tiny_x39.pt'
    save_model(path, model, spec)
    return path
