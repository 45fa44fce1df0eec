"""tensorstats.hf.TensorStatsCallback on a tiny BERT, against snapshots the test takes itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import tensorstats as ts

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from transformers import (  # noqa: E402
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from tensorstats.hf import TensorStatsCallback, lr_scalars  # noqa: E402

pytestmark = pytest.mark.slow

GA = 2          # gradient_accumulation_steps
STEPS = 4       # optimizer steps
BATCH, TOKENS, HIDDEN = 4, 8, 16
QKV = [f"bert.encoder.layer.{i}.attention.self.{m}" for i in (0, 1)
       for m in ("query", "key", "value")]


def tiny_bert():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=64, hidden_size=HIDDEN, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=16,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=3)
    return BertForSequenceClassification(config)


def dataset(n, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 64, (n, TOKENS), generator=g)
    labels = torch.randint(0, 3, (n,), generator=g)
    return [{"input_ids": ids[i], "labels": labels[i]} for i in range(n)]


def train(model, tmp_path, callbacks, **kwargs):
    args = TrainingArguments(output_dir=os.fspath(tmp_path / "out"), max_steps=STEPS,
                             per_device_train_batch_size=BATCH, gradient_accumulation_steps=GA,
                             report_to=[], use_cpu=True, save_strategy="no", logging_steps=1,
                             disable_tqdm=True, max_grad_norm=0.0, **kwargs)
    # max_grad_norm=0: no clipping, so the .grad the optimizer steps with is the reference
    trainer = Trainer(model=model, args=args, train_dataset=dataset(64, 1),
                      eval_dataset=dataset(8, 2), callbacks=callbacks)
    trainer.train()
    return trainer


class Snapshots(TrainerCallback):
    """What each optimizer step used, taken by the test: weights, grads, losses, a feature."""

    def __init__(self, model):
        self.model, self.steps = model, []
        query = model.get_submodule(QKV[0])
        query.register_forward_hook(self._query_output)
        model.register_forward_hook(self._model_output)

    def _training(self):
        return self.model.training and torch.is_grad_enabled() and self.steps

    def _query_output(self, module, args, out):
        if self._training() and "feature" not in self.steps[-1]:
            self.steps[-1]["feature"] = out.detach().clone()  # first micro-batch

    def _model_output(self, module, args, out):
        if self._training():
            self.steps[-1]["losses"].append(out.loss.item())

    def on_step_begin(self, args, state, control, **kwargs):
        self.steps.append({"weight": {k: v.detach().clone()
                                      for k, v in self.model.named_parameters()},
                           "losses": []})

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.steps[-1]["grad"] = {k: v.grad.detach().clone()
                                  for k, v in self.model.named_parameters()}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("hf")
    model = tiny_bert()
    snaps = Snapshots(model)
    path = os.fspath(tmp_path / "run.zarr")
    # evaluation after steps 2 and 4 (HF's numbering): its passes must not be recorded
    trainer = train(model, tmp_path, [snaps, TensorStatsCallback(path)],
                    eval_strategy="steps", eval_steps=2)
    return ts.open_run(path), snaps.steps, trainer.state.log_history


def test_qkv_weights_grads_and_features_are_those_of_each_step(recorded):
    run, steps, _ = recorded
    assert len(steps) == STEPS
    for name in QKV:
        for p in ("weight", "bias"):
            assert f"{name}.{p}" in run.layers("weight")
            assert f"{name}.{p}" in run.layers("grad")
        assert name in run.layers("feature")
    for name in QKV:
        w, g = run["weight", f"{name}.weight"], run["grad", f"{name}.weight"]
        assert w.sizes["step"] == g.sizes["step"] == STEPS
        assert w.shape == g.shape == (STEPS, HIDDEN, HIDDEN)
        assert w["step"].values.tolist() == list(range(STEPS))  # HF's global_step - 1
        f = run["feature", name]
        assert f.dims[:3] == ("step", "channel", "sample")
        assert f.shape == (STEPS, HIDDEN, BATCH, TOKENS)
        for s, snap in enumerate(steps):
            for p in ("weight", "bias"):
                np.testing.assert_array_equal(run["weight", f"{name}.{p}"].sel(step=s).values,
                                              snap["weight"][f"{name}.{p}"].numpy())
                np.testing.assert_allclose(run["grad", f"{name}.{p}"].sel(step=s).values,
                                           snap["grad"][f"{name}.{p}"].numpy(),
                                           rtol=1e-5, atol=1e-8,
                                           err_msg=f"grad of {name}.{p} at step {s}")
    # the query's output of each step's first micro-batch, (sample, token, channel) in torch;
    # after the evaluation at HF step 2, step 2 must still hold the training batch
    for s, snap in enumerate(steps):
        np.testing.assert_allclose(run["feature", QKV[0]].sel(step=s).values,
                                   snap["feature"].permute(2, 0, 1).numpy(), rtol=1e-5,
                                   atol=1e-6, err_msg=f"query feature at step {s}")


def test_scalars_match_the_trainers_log(recorded):
    run, steps, log = recorded
    train_log = [e for e in log if "loss" in e]
    eval_log = [e for e in log if "eval_loss" in e]
    assert [e["step"] for e in train_log] == list(range(1, STEPS + 1))
    sc = run.scalars
    assert sc["step"].values.tolist() == list(range(STEPS))
    # HF logs step s + 1 for what tensorstats labels s
    np.testing.assert_array_equal(sc["hf/loss"].values, [e["loss"] for e in train_log])
    np.testing.assert_array_equal(sc["hf/grad_norm"].values, [e["grad_norm"] for e in train_log])
    # HF's default AdamW: two parameter groups (decay, no decay) with one schedule
    for name in ("lr/0", "lr/1"):
        np.testing.assert_allclose(sc[name].values, [e["learning_rate"] for e in train_log],
                                   rtol=1e-12)
    assert sc["hf/eval_loss"].dropna("step")["step"].values.tolist() == [1, 3]
    np.testing.assert_array_equal(sc["hf/eval_loss"].dropna("step").values,
                                  [e["eval_loss"] for e in eval_log])
    # loss: the mean of the micro-batch losses the model returned
    mean = [np.mean(snap["losses"]) for snap in steps]
    assert all(len(snap["losses"]) == GA for snap in steps)
    np.testing.assert_allclose(sc["loss"].values, mean, rtol=1e-6)
    # HF back-propagates either their mean or (num_items_in_batch models) their sum
    hf = sc["hf/loss"].values
    assert np.allclose(hf, mean, rtol=1e-5) or np.allclose(hf, np.multiply(mean, GA), rtol=1e-5)


def test_every_and_a_recorder_of_yours(tmp_path):
    model = tiny_bert()
    hooks = [(m, len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()]
    rec = ts.Recorder(tmp_path / "run.zarr")
    train(model, tmp_path, [TensorStatsCallback(rec, every=2, kinds=("weight",),
                                                layers=["*.attention.self.*"])])
    assert not rec.closed, "a Recorder given by the user is flushed, not closed"
    rec.close()
    run = ts.open_run(rec.store)
    assert run.kinds == ["weight"]
    assert sorted(run.layers("weight")) == sorted(f"{n}.{p}" for n in QKV
                                                  for p in ("bias", "weight"))
    assert run["weight", f"{QKV[2]}.weight"]["step"].values.tolist() == [0, 2]
    assert run.scalars["loss"]["step"].values.tolist() == list(range(STEPS))
    for m, fwd, pre in hooks:  # every hook the callback added is gone
        assert (len(m._forward_hooks), len(m._forward_pre_hooks)) == (fwd, pre), m
    for p in model.parameters():
        assert not p._post_accumulate_grad_hooks


def test_close_after_a_failed_train(tmp_path):
    model = tiny_bert()
    calls = []

    def fail_at_step_2(module, args, kwargs):
        calls.append(1)
        if len(calls) == 2 * GA + 1:  # first micro-batch of the third step
            raise RuntimeError("boom")

    handle = model.register_forward_pre_hook(fail_at_step_2, with_kwargs=True)
    path = os.fspath(tmp_path / "run.zarr")
    callback = TensorStatsCallback(path, kinds=("weight", "grad"))
    with pytest.raises(RuntimeError, match="boom"):
        try:
            train(model, tmp_path, [callback])
        finally:
            callback.close()
    handle.remove()
    assert callback.recorder is None and callback.watcher is None
    with open(os.path.join(path, "zarr.json")) as f:
        assert "consolidated_metadata" in json.load(f), "the store was not closed"
    run = ts.open_run(path)
    assert run["grad", f"{QKV[0]}.weight"]["step"].values.tolist() == [0, 1]
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks, m


def test_lr_names():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    assert lr_scalars(torch.optim.AdamW(a.parameters(), lr=3e-4)) == {"lr": 3e-4}
    opt = torch.optim.AdamW([{"params": a.parameters(), "name": "body"},
                             {"params": b.parameters(), "lr": 1e-2}], lr=3e-4)
    assert lr_scalars(opt) == {"lr/body": 3e-4, "lr/1": 1e-2}


def test_missing_transformers_names_the_extra():
    code = ("import sys\n"
            "sys.modules['transformers'] = None  # as if the extra were not installed\n"
            "import tensorstats\n"
            "try:\n"
            "    import tensorstats.hf\n"
            "except ImportError as e:\n"
            "    print(e)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "tensorstats.hf needs transformers: pip install 'tensorstats[hf]'"
