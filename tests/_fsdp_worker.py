"""One rank of the FSDP test (test_fsdp.py): FSDP2 (fully_shard) on CPU with gloo, watched.

Saves, per rank, the full weights each step used, the full reduced gradients
and the rank's own features, for the test to compare with what was recorded.
Usage: _fsdp_worker.py RANK WORLD PORT STORE OUT
"""

import os
import sys

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

import tensorstats as ts
from tensorstats.torch import watch

STEPS = 3


def main(rank: int, world: int, port: int, store: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (world,))
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))  # 5 rows: uneven shards
    fully_shard(net[0], mesh=mesh)
    fully_shard(net, mesh=mesh)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    rec = ts.Recorder(store)
    saved: dict[str, np.ndarray] = {}
    with watch(net, rec, kinds=("weight", "grad", "feature")) as w:
        for step in range(STEPS):
            g = torch.Generator().manual_seed(1000 * rank + step)
            x, y = torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)
            for name, p in net.named_parameters():
                saved[f"weight/{name}/{step}"] = p.full_tensor().detach().numpy().copy()
            opt.zero_grad()
            feats = {}
            hook = net[0].register_forward_hook(
                lambda m, i, o, feats=feats: feats.update(f=o.detach()))
            loss = nn.functional.cross_entropy(net(x), y)
            hook.remove()
            loss.backward()
            saved[f"feature/{step}"] = feats["f"].numpy().copy()
            for name, p in net.named_parameters():
                saved[f"grad/{name}/{step}"] = p.grad.full_tensor().numpy().copy()
            opt.step()
            w.step(step, loss=loss.item())
    rec.close()
    np.savez(out, **saved)
    dist.destroy_process_group()


if __name__ == "__main__":
    a = sys.argv[1:]
    main(int(a[0]), int(a[1]), int(a[2]), a[3], a[4])
