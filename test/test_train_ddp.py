"""Two CPU processes (gloo) train in lockstep: DistributedDataParallel keeps them identical."""
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from bisenet_core.model import bisenet
from bisenet_core.train.data import prepare_synthetic
from bisenet_core.train.loss import OhemCrossEntropy, bisenet_loss
from bisenet_core.train.runtime import setup_runtime, teardown_runtime
from test_train_loop import tiny_config  # noqa: I100 (test/ is on sys.path)
from training.train import train


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, root: str, out: str) -> None:
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    runtime = setup_runtime('cpu', 'auto')
    try:
        assert runtime.distributed and runtime.amp_dtype is None
        assert dist.get_backend() == 'gloo'
        # 1) One DDP step on different data per rank: gradients are averaged, so equal.
        torch.manual_seed(0)
        model = torch.nn.parallel.DistributedDataParallel(bisenet(3))
        torch.manual_seed(100 + rank)
        images, labels = torch.randn(2, 3, 64, 64), torch.randint(0, 3, (2, 64, 64))
        output = model(images)
        loss, _ = bisenet_loss(output.logits, output.aux, labels, OhemCrossEntropy())
        loss.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        gathered = [torch.empty_like(grads) for _ in range(world)]
        dist.all_gather(gathered, grads)
        losses = [torch.empty(1) for _ in range(world)]
        dist.all_gather(losses, loss.detach().reshape(1))
        # 2) The training loop itself, 3 steps of 2 images per rank.
        config = tiny_config(root, out, 'train.iterations=3', 'train.batch_size=4')
        result = train(config, runtime, progress=False)
        module = result['model'].module
        weights = torch.cat([p.detach().flatten() for p in module.parameters()])
        torch.save({'grads': gathered, 'losses': losses, 'weights': weights},
                   os.path.join(out, f'rank{rank}.pt'))
    finally:
        teardown_runtime()


def test_two_process_gloo_ddp_keeps_ranks_identical(tmp_path):
    root, out = tmp_path / 'synthetic', tmp_path / 'run'
    out.mkdir()
    prepare_synthetic(tiny_config(root, out))  # generate once, before the workers start
    mp.spawn(_worker, args=(2, _free_port(), str(root), str(out)), nprocs=2, join=True)
    rank0, rank1 = (torch.load(out / f'rank{r}.pt') for r in (0, 1))
    # Different data gave different losses but the same (averaged) gradients.
    assert not torch.equal(rank0['losses'][0], rank0['losses'][1])
    assert torch.equal(rank0['grads'][0], rank0['grads'][1])
    assert rank0['grads'][0].abs().sum() > 0
    # After three optimiser steps both ranks hold the same weights; rank 0 wrote the files.
    assert torch.allclose(rank0['weights'], rank1['weights'], rtol=0, atol=1e-6)
    assert (out / 'model.pt').is_file() and (out / 'last.ckpt').is_file()
