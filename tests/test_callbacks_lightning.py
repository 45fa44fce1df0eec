"""tensorstats.lightning.TensorStatsCallback against a hand-written watch loop and autograd."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import tensorstats as ts

torch = pytest.importorskip("torch")
pl = pytest.importorskip("lightning.pytorch")

from tensorstats.lightning import TensorStatsCallback, lr_scalars  # noqa: E402
from tensorstats.torch import watch  # noqa: E402

F = torch.nn.functional
pytestmark = [
    pytest.mark.slow,  # and Lightning's own notices about this tiny set-up:
    pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no"),
    pytest.mark.filterwarnings("ignore:`isinstance.treespec, LeafSpec.` is deprecated"),
]

ACC = 2      # accumulate_grad_batches
STEPS = 3    # optimizer steps
BATCH = 4


def make_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))


def make_optim(params):
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    return opt, torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)


def data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(STEPS * ACC * BATCH, 6, generator=g)
    y = torch.randint(0, 3, (STEPS * ACC * BATCH,), generator=g)
    return x, y


def loader(x, y):
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=BATCH)


class Lit(pl.LightningModule):
    """The net; ``call_self=False`` makes training_step call ``self.net`` directly."""

    def __init__(self, call_self=True, fail_at=None, groups=False):
        super().__init__()
        self.net = make_net()
        self.call_self, self.fail_at, self.groups = call_self, fail_at, groups

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        if batch_idx == self.fail_at:
            raise RuntimeError("boom")
        x, y = batch
        return F.cross_entropy(self(x) if self.call_self else self.net(x), y)

    def validation_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch[0] * 3.0), batch[1])

    def configure_optimizers(self):
        if self.groups:
            opt = torch.optim.SGD([{"params": self.net[0].parameters()},
                                   {"params": self.net[2].parameters(), "lr": 0.01}], lr=0.1)
            return opt
        opt, sched = make_optim(self.parameters())
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def fit(module, callback, **trainer_kwargs):
    x, y = data()
    kwargs = dict(max_steps=STEPS, accumulate_grad_batches=ACC, logger=False,
                  enable_checkpointing=False, enable_progress_bar=False,
                  enable_model_summary=False, accelerator="cpu", num_sanity_val_steps=0,
                  limit_val_batches=0)
    kwargs.update(trainer_kwargs)
    trainer = pl.Trainer(callbacks=[callback], **kwargs)
    trainer.fit(module, loader(x, y), loader(x, y) if kwargs["limit_val_batches"] else None)
    return trainer


@pytest.fixture(scope="module")
def hand(tmp_path_factory):
    """The same training written by hand with watch, and autograd references per step."""
    path = os.fspath(tmp_path_factory.mktemp("hand") / "run.zarr")
    net = make_net()
    opt, sched = make_optim(net.parameters())
    x, y = data()
    micro = list(zip(x.split(BATCH), y.split(BATCH), strict=True))
    ref = {"weight": [], "grad": [], "feature": [], "loss": [], "lr": []}
    rec = ts.Recorder(path)
    w = watch(net, rec)
    for step in range(STEPS):
        batches = micro[step * ACC:(step + 1) * ACC]
        # autograd reference: the accumulated gradient of the step's objective
        params = {k: v.detach().clone().requires_grad_(True) for k, v in net.named_parameters()}
        objective = sum(F.cross_entropy(torch.func.functional_call(net, params, (xb,)), yb) / ACC
                        for xb, yb in batches)
        grads = torch.autograd.grad(objective, list(params.values()))
        ref["weight"].append({k: v.detach().numpy() for k, v in params.items()})
        ref["grad"].append({k: g.numpy() for k, g in zip(params, grads, strict=True)})
        first = batches[0][0]
        ref["feature"].append((first @ params["0.weight"].T + params["0.bias"]).detach().numpy())
        ref["lr"].append(opt.param_groups[0]["lr"])
        # the hand-written loop
        opt.zero_grad()
        total = 0.0
        for xb, yb in batches:
            loss = F.cross_entropy(net(xb), yb) / ACC
            loss.backward()
            total += loss.item()
        opt.step()
        sched.step()
        w.step(step, loss=total, lr=ref["lr"][-1])
        ref["loss"].append(total)
    w.remove()
    rec.close()
    return path, ref


def assert_same_run(lightning_path, hand_path):
    """Every array of every kind and layer, and the scalars, equal in both stores."""
    a, b = ts.open_run(lightning_path), ts.open_run(hand_path)
    assert a.kinds == b.kinds == ["feature", "feature_grad", "grad", "weight"]
    for kind in b.kinds:
        # Lightning names the net's layers net.0, net.2; by hand they are 0, 2
        assert a.layers(kind) == [f"net.{n}" for n in b.layers(kind)]
        for layer in b.layers(kind):
            da, db = a[kind, f"net.{layer}"], b[kind, layer]
            assert da.dims == db.dims
            np.testing.assert_array_equal(da["step"], db["step"])
            np.testing.assert_allclose(da.values, db.values, rtol=1e-6, atol=1e-7,
                                       err_msg=f"{kind} {layer}")
    np.testing.assert_allclose(a.scalars["loss"].values, b.scalars["loss"].values, rtol=1e-6)
    np.testing.assert_array_equal(a.scalars["lr"].values, b.scalars["lr"].values)


def test_callback_records_what_the_hand_written_loop_records(tmp_path, hand):
    hand_path, ref = hand
    path = os.fspath(tmp_path / "run.zarr")
    trainer = fit(Lit(), TensorStatsCallback(path))
    assert trainer.global_step == STEPS
    run = ts.open_run(path)
    # one recorded step per optimizer step, labelled 0, 1, 2 (global_step during the step)
    assert run["weight", "net.0.weight"]["step"].values.tolist() == list(range(STEPS))
    assert run.scalars["step"].values.tolist() == list(range(STEPS))
    assert_same_run(path, hand_path)
    # and against references that watch did not compute
    for s in range(STEPS):
        for name in ("0.weight", "0.bias", "2.weight", "2.bias"):
            np.testing.assert_array_equal(run["weight", f"net.{name}"].sel(step=s).values,
                                          ref["weight"][s][name])
            np.testing.assert_allclose(run["grad", f"net.{name}"].sel(step=s).values,
                                       ref["grad"][s][name], rtol=1e-5, atol=1e-7,
                                       err_msg=f"grad of {name} at step {s} is not the "
                                               "accumulated gradient of the optimizer step")
        # feature dims (step, channel, sample): the first micro-batch's pre-activation
        np.testing.assert_allclose(run["feature", "net.0"].sel(step=s).values,
                                   ref["feature"][s].T, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run.scalars["loss"].values, ref["loss"], rtol=1e-6)
    np.testing.assert_array_equal(run.scalars["lr"].values, [0.1, 0.05, 0.025])
    np.testing.assert_array_equal(run.scalars["lr"].values, ref["lr"])


def test_submodule_calls_and_validation_loops_record_the_same_run(tmp_path, hand):
    """training_step calls self.net, not self; validation runs mid-training: same store."""
    hand_path, _ = hand
    path = os.fspath(tmp_path / "run.zarr")
    # validation after every 2 batches (= every optimizer step), sanity check first;
    # its inputs are scaled by 3, so recorded validation features could not pass
    fit(Lit(call_self=False), TensorStatsCallback(path), limit_val_batches=1,
        val_check_interval=2, num_sanity_val_steps=1)
    assert_same_run(path, hand_path)


def test_every_and_a_recorder_of_yours(tmp_path, hand):
    hand_path, _ = hand
    rec = ts.Recorder(tmp_path / "run.zarr", attrs={"init": "default"})
    module = Lit()
    fit(module, TensorStatsCallback(rec, every=2, kinds=("weight",)))
    assert not rec.closed, "a Recorder given by the user is flushed, not closed"
    rec.record_scalar("after", 1.0, step=0)
    rec.close()
    run, mine = ts.open_run(rec.store), ts.open_run(hand_path)
    assert run.kinds == ["weight"] and run.attrs["init"] == "default"
    da = run["weight", "net.2.weight"]
    assert da["step"].values.tolist() == [0, 2]
    np.testing.assert_allclose(da.values, mine["weight", "2.weight"].sel(step=[0, 2]).values,
                               rtol=1e-6)
    assert run.scalars["loss"]["step"].values.tolist() == [0, 1, 2]  # scalars at every step
    # every hook is gone after fit
    for m in module.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks, m
    for p in module.parameters():
        assert not p._post_accumulate_grad_hooks


def test_exception_closes_the_store_and_removes_the_hooks(tmp_path):
    path = os.fspath(tmp_path / "run.zarr")
    module = Lit(fail_at=4, groups=True)  # fails in the first micro-batch of step 2
    callback = TensorStatsCallback(path, kinds=("weight", "grad"))
    with pytest.raises(RuntimeError, match="boom"):
        fit(module, callback)
    assert callback.recorder is None and callback.watcher is None
    with open(os.path.join(path, "zarr.json")) as f:
        assert "consolidated_metadata" in json.load(f), "the store was not closed"
    run = ts.open_run(path)
    assert run["grad", "net.0.weight"]["step"].values.tolist() == [0, 1]
    # two parameter groups: one lr series each
    assert sorted(run.scalars) == ["loss", "lr/0", "lr/1"]
    np.testing.assert_array_equal(run.scalars["lr/0"].values, [0.1, 0.1])
    np.testing.assert_array_equal(run.scalars["lr/1"].values, [0.01, 0.01])
    for m in module.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks, m


def test_lr_names():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    one = torch.optim.SGD(a.parameters(), lr=0.5)
    two = torch.optim.Adam([{"params": a.parameters()}, {"params": b.parameters(), "lr": 2e-3}])
    assert lr_scalars([one]) == {"lr": 0.5}
    assert lr_scalars([two]) == {"lr/0": 1e-3, "lr/1": 2e-3}
    assert lr_scalars([one, two]) == {"lr/0": 0.5, "lr/1/0": 1e-3, "lr/1/1": 2e-3}


def test_attrs_need_a_path(tmp_path):
    with ts.Recorder(tmp_path / "run.zarr") as rec, pytest.raises(ValueError, match="attrs"):
        TensorStatsCallback(rec, attrs={"a": 1})


def test_missing_lightning_names_the_extra():
    code = ("import sys\n"
            "for m in ('lightning', 'lightning.pytorch', 'pytorch_lightning'):\n"
            "    sys.modules[m] = None  # as if the extra were not installed\n"
            "import tensorstats\n"
            "try:\n"
            "    import tensorstats.lightning\n"
            "except ImportError as e:\n"
            "    print(e)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ("tensorstats.lightning needs PyTorch Lightning: "
                                   "pip install 'tensorstats[lightning]'")


def test_import_tensorstats_does_not_import_lightning():
    code = ("import sys, tensorstats as ts\n"
            "ts.Recorder, ts.open_run\n"
            "bad = [m for m in ('lightning', 'pytorch_lightning', 'transformers', 'torch')\n"
            "       if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
