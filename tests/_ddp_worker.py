"""One rank of the DDP test (test_ddp.py): trains a tiny model under DDP with watch.

Saves, per rank, what the test compares against: the inputs of each step, the
rank's own features and local gradients (a forward/backward of the same model
without DDP), and the weights. Usage: _ddp_worker.py RANK WORLD PORT STORE OUT [KILL_AT]
"""

import os
import sys

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

import tensorstats as ts
from tensorstats.torch import watch

STEPS = 4


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))


def batch(rank: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 * rank + step)
    return torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)


def main(rank: int, world: int, port: int, store: str, out: str, kill_at: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    net = model()
    ddp = nn.parallel.DistributedDataParallel(net)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    rec = ts.Recorder(store)  # rank and world size from torch.distributed
    saved: dict[str, np.ndarray] = {}
    with watch(ddp, rec, kinds=("weight", "grad", "local_grad", "feature", "feature_grad")) as w:
        for step in range(STEPS):
            if step == kill_at:
                rec.flush()
                print("ready", flush=True)
                os.kill(os.getpid(), 9)
            x, y = batch(rank, step)
            # this rank's own pass, without DDP, on a copy: the reference
            ref = model()
            ref.load_state_dict(net.state_dict())
            xr_ = x.clone()
            h = ref[0](xr_)
            h.retain_grad()
            loss_ref = nn.functional.cross_entropy(ref[2](ref[1](h)), y)
            loss_ref.backward()
            saved[f"feature/{step}"] = h.detach().numpy()
            saved[f"feature_grad/{step}"] = h.grad.numpy()
            saved[f"local_grad/{step}"] = ref[0].weight.grad.numpy()
            saved[f"weight/{step}"] = net[0].weight.detach().numpy().copy()
            opt.zero_grad()
            loss = nn.functional.cross_entropy(ddp(x), y)
            loss.backward()
            saved[f"grad/{step}"] = net[0].weight.grad.numpy().copy()  # all-reduced
            opt.step()
            w.step(step, loss=loss.item())
    rec.close()
    np.savez(out, **saved)
    dist.destroy_process_group()


if __name__ == "__main__":
    args = sys.argv[1:]
    main(int(args[0]), int(args[1]), int(args[2]), args[3], args[4],
         int(args[5]) if len(args) > 5 else -1)
