"""tensorstats.torch.watch on transformer language models, against the model and autograd.

The references are the model's own parameters and ``.grad`` (autograd), the
test's own forward hooks and its own calls of the attention modules: never
what ``watch`` computed.
"""

from __future__ import annotations

import numpy as np
import pytest

import tensorstats as ts

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from tensorstats.torch import watch  # noqa: E402

VOCAB, D_MODEL, HEADS, SEQ, BATCH = 50, 16, 2, 8, 4
LAYERS = 2


class TinyLM(nn.Module):
    """Embedding -> 2-layer TransformerEncoder -> Linear head, and a scalar temperature."""

    def __init__(self, batch_first: bool):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, D_MODEL)
        layer = nn.TransformerEncoderLayer(D_MODEL, HEADS, dim_feedforward=32, dropout=0.0,
                                           batch_first=batch_first)
        self.encoder = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
        self.head = nn.Linear(D_MODEL, VOCAB)
        self.temperature = nn.Parameter(torch.tensor(1.5))

    def forward(self, tokens):
        return self.head(self.encoder(self.embed(tokens))) / self.temperature


def _tokens(batch_first: bool, batch: int = BATCH):
    shape = (batch, SEQ) if batch_first else (SEQ, batch)
    return torch.randint(0, VOCAB, shape)


def _loss(model, tokens, batch_first: bool):
    logits = model(tokens)
    targets = tokens.roll(-1, dims=1 if batch_first else 0)
    return F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1))


def _to_store(t, batch_first: bool):
    """(batch, tokens, C) or (tokens, batch, C) -> the stored (channel, ...) order."""
    return t.detach().permute(2, 0, 1).numpy()


class AttentionSpy:
    """The test's own hooks on every MultiheadAttention: its inputs, outputs, output grads."""

    def __init__(self, model):
        self.calls: dict[str, list] = {}
        self.grads: dict[str, list] = {}
        self.handles = [m.register_forward_hook(self._hook(n))
                        for n, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)]

    def _hook(self, name):
        def hook(module, inputs, output):
            out = output[0]
            self.calls.setdefault(name, []).append((inputs[0].detach().clone(),
                                                    out.detach().clone()))
            if out.requires_grad:
                out.register_hook(lambda g: self.grads.setdefault(name, []).append(g.clone()))

        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "seq_first"])
def test_every_parameter_and_attention_output_recorded(tmp_path, batch_first):
    torch.manual_seed(0)
    model = TinyLM(batch_first)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    rec = ts.Recorder(tmp_path / "run.zarr")
    w = watch(model, rec, every=2)
    spy = AttentionSpy(model)
    expected = {}
    for step in range(3):
        weights = {n: p.detach().clone() for n, p in model.named_parameters()}
        spy.calls.clear()
        spy.grads.clear()
        opt.zero_grad()
        loss = _loss(model, _tokens(batch_first), batch_first)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        opt.step()  # changes the weights before w.step: the recorded ones must not
        expected[step] = (weights, grads, dict(spy.calls), dict(spy.grads))
        w.step(step, loss=loss.item())
    w.remove()
    spy.remove()
    rec.close()

    run = ts.open_run(tmp_path / "run.zarr")
    names = sorted(n for n, _ in model.named_parameters())
    assert "encoder.layers.0.self_attn.in_proj_weight" in names
    assert run.layers("weight") == run.layers("grad") == names
    attention = [f"encoder.layers.{i}.self_attn" for i in range(LAYERS)]
    assert set(attention) <= set(run.layers("feature"))
    assert "encoder.layers.0.self_attn.out_proj" not in run.layers("feature")  # functional
    for step in (0, 2):
        weights, grads, calls, out_grads = expected[step]
        for name in names:
            np.testing.assert_array_equal(run["weight", name].sel(step=step).values,
                                          weights[name].numpy(), err_msg=name)
            np.testing.assert_array_equal(run["grad", name].sel(step=step).values,
                                          grads[name].numpy(), err_msg=name)
        for name in attention:
            mha = model.get_submodule(name)
            ((x, out),) = calls[name]
            feature = run["feature", name]
            assert feature.dims == (("step", "channel", "sample", "token") if batch_first else
                                    ("step", "channel", "token", "sample"))
            assert feature.sizes["token"] == SEQ and feature.sizes["sample"] == BATCH
            assert feature.sizes["channel"] == D_MODEL
            np.testing.assert_array_equal(feature.sel(step=step).values,
                                          _to_store(out, batch_first))
            # and against the test's own call of the attention, with the weights of the pass
            with torch.no_grad():
                saved = {n: p.clone() for n, p in mha.named_parameters()}
                for n, p in mha.named_parameters():
                    p.copy_(weights[f"{name}.{n}"])
                ref = mha(x, x, x, need_weights=False)[0]
                for n, p in mha.named_parameters():
                    p.copy_(saved[n])
            np.testing.assert_allclose(feature.sel(step=step).values,
                                       _to_store(ref, batch_first), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(run["feature_grad", name].sel(step=step).values,
                                       _to_store(out_grads[name][0], batch_first),
                                       rtol=1e-6, atol=1e-9)
    head = run["feature", "head"]
    assert head.dims[2:] == (("sample", "token") if batch_first else ("token", "sample"))
    assert head.attrs["sequence"]["batch_first"] is batch_first
    assert run["feature", "encoder.layers.1.linear1"].sizes["token"] == SEQ


def test_parameter_layouts_read_and_analyse(tmp_path):
    torch.manual_seed(0)
    model = TinyLM(True)
    rec = ts.Recorder(tmp_path / "run.zarr")
    with watch(model, rec, kinds=("weight", "grad")) as w:
        _loss(model, _tokens(True), True).backward()
        w.step(0)
    rec.close()
    run = ts.open_run(tmp_path / "run.zarr")
    params = dict(model.named_parameters())
    cases = {"embed.weight": ("step", "channel", "dim_1"),
             "encoder.layers.0.self_attn.in_proj_weight": ("step", "channel", "dim_1"),
             "encoder.layers.0.self_attn.in_proj_bias": ("step", "channel"),
             "encoder.layers.1.norm2.weight": ("step", "channel"),
             "temperature": ("step",)}
    for name, dims in cases.items():
        da = run["weight", name]
        assert da.dims == dims, name
        p = params[name].detach().double().numpy()
        m = ts.moments(da).compute()
        rows = p.reshape(p.shape[0], -1) if p.ndim else p.reshape(1, 1)
        np.testing.assert_allclose(m["mean"].values.reshape(-1), rows.mean(1), rtol=1e-6,
                                   atol=1e-7, err_msg=name)
        np.testing.assert_allclose(m["var"].values.reshape(-1), rows.var(1), rtol=1e-5,
                                   atol=1e-9, err_msg=name)
        assert m["count"].values.reshape(-1).tolist() == [rows.shape[1]] * rows.shape[0]
    assert run["weight", "embed.weight"].attrs["module"]["type"] == "Embedding"
    mha_meta = run["grad", "encoder.layers.0.self_attn.in_proj_weight"].attrs["module"]
    assert mha_meta["type"] == "MultiheadAttention" and mha_meta["num_heads"] == HEADS


@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "seq_first"])
def test_gradient_accumulation_records_the_gradient_the_optimizer_uses(tmp_path, batch_first):
    torch.manual_seed(0)
    model = TinyLM(batch_first)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    micro = [_tokens(batch_first, batch=2) for _ in range(3)]
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    separate = []  # autograd's gradient of each micro-batch on its own (no accumulation)
    for tokens in micro:
        separate.append(torch.autograd.grad(_loss(model, tokens, batch_first),
                                            list(model.parameters())))
    rec = ts.Recorder(tmp_path / "run.zarr")
    w = watch(model, rec, every=1)
    spy = AttentionSpy(model)
    opt.zero_grad()
    for tokens in micro:
        (_loss(model, tokens, batch_first)).backward()
    used = {n: p.grad.clone() for n, p in model.named_parameters()}  # what opt.step() sees
    opt.step()
    w.step(0)
    w.remove()
    spy.remove()
    rec.close()
    run = ts.open_run(tmp_path / "run.zarr")
    for i, (name, _) in enumerate(model.named_parameters()):
        recorded = run["grad", name].sel(step=0).values
        np.testing.assert_array_equal(recorded, used[name].numpy(), err_msg=name)
        summed = sum(g[i] for g in separate).numpy()
        np.testing.assert_allclose(recorded, summed, rtol=1e-5, atol=1e-7, err_msg=name)
        np.testing.assert_array_equal(run["weight", name].sel(step=0).values,
                                      weights[name].numpy(), err_msg=name)
    # features: the first micro-batch only
    name = "encoder.layers.0.self_attn"
    first_out = spy.calls[name][0][1]
    assert len(spy.calls[name]) == 3
    np.testing.assert_array_equal(run["feature", name].sel(step=0).values,
                                  _to_store(first_out, batch_first))
    assert run["feature", name].sizes["sample"] == 2


def test_sequence_first_probe_pass_and_captured_emission(tmp_path):
    """Sequence-first passes are joined along the batch axis; capture equals offline."""
    torch.manual_seed(0)
    model = TinyLM(False)
    rec = ts.Recorder(tmp_path / "run.zarr")
    w = watch(model, rec, kinds=("weight", "feature", "feature_grad", "emission", "absorption"))
    batches = [_tokens(False, batch=2), _tokens(False, batch=3)]
    spy = AttentionSpy(model)
    _loss(model, batches[0], False).backward()
    w.step(0)
    spy.calls.clear()
    with w.probe_pass("valid"):
        for tokens in batches:
            _loss(model, tokens, False).backward()
    w.remove()
    spy.remove()
    rec.close()
    run = ts.open_run(tmp_path / "run.zarr")
    valid = run.probe("valid")
    feature = valid["feature", "encoder.layers.1.self_attn"]
    assert feature.dims == ("step", "channel", "token", "sample")
    assert feature.sizes["sample"] == 5 and feature.sizes["token"] == SEQ
    outs = torch.cat([out for _, out in spy.calls["encoder.layers.1.self_attn"]], dim=1)
    np.testing.assert_array_equal(feature.sel(step=0).values, _to_store(outs, False))
    for source in (run, valid):
        for layer in ("encoder.layers.0.linear1", "head"):
            offline = ts.emission_absorption(source, layer, source="offline").compute()
            captured = ts.emission_absorption(source, layer, source="captured").compute()
            assert captured.sizes["sample"] == source["feature", layer].sizes["sample"]
            for var in ("emission", "absorption"):
                np.testing.assert_allclose(captured[var].values, offline[var].values,
                                           rtol=1e-10, err_msg=f"{layer} {var}")
    assert "encoder.layers.0.self_attn" not in run.layers("emission")
    with pytest.raises((KeyError, ValueError), match="self_attn"):
        ts.emission_absorption(run, "encoder.layers.0.self_attn")


def test_probes_see_attention_despite_the_fast_path(tmp_path):
    torch.manual_seed(0)
    model = TinyLM(True)
    probe = _tokens(True)
    rec = ts.Recorder(tmp_path / "run.zarr")
    w = watch(model, rec, kinds=("feature",), probes={"valid": probe})
    _loss(model, _tokens(True), True).backward()
    assert torch.backends.mha.get_fastpath_enabled()
    w.step(0)
    assert torch.backends.mha.get_fastpath_enabled()  # restored
    w.remove()
    rec.close()
    spy = AttentionSpy(model)
    model.eval()
    torch.backends.mha.set_fastpath_enabled(False)  # the reference's own hooks need it off
    try:
        with torch.no_grad():
            logits = model(probe)
    finally:
        torch.backends.mha.set_fastpath_enabled(True)
        spy.remove()
    valid = ts.open_run(tmp_path / "run.zarr").probe("valid")
    for name in ("encoder.layers.0.self_attn", "encoder.layers.1.self_attn"):
        np.testing.assert_allclose(valid["feature", name].sel(step=0).values,
                                   _to_store(spy.calls[name][0][1], True), rtol=1e-6)
    np.testing.assert_allclose(valid["feature", "head"].sel(step=0).values,
                               _to_store(logits * model.temperature, True), rtol=1e-5,
                               atol=1e-6)


def test_sequence_dim_argument_and_unknown_layout(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))  # nothing says
    x = torch.randn(SEQ, BATCH, 6)  # tokens first
    dims = {}
    for sequence_dim in ("auto", 0, 1, None):
        rec = ts.Recorder(tmp_path / f"{sequence_dim}.zarr")
        with watch(model, rec, kinds=("feature", "input"), sequence_dim=sequence_dim) as w:
            model(x)
            w.step(0)
        rec.close()
        run = ts.open_run(tmp_path / f"{sequence_dim}.zarr")
        dims[sequence_dim] = run["feature", "0"].dims
        np.testing.assert_array_equal(run["feature", "0"].values[0],
                                      _to_store(model[0](x), False))
        np.testing.assert_array_equal(run["input", "2"].values[0],
                                      _to_store(torch.tanh(model[0](x)), False))
        if sequence_dim == 0:
            assert run["feature", "2"].attrs["sequence"] == {"batch_first": False,
                                                             "source": "sequence_dim=0"}
            assert run["feature", "2"].attrs["input_shape"] == [SEQ, 5]
    assert dims == {"auto": ("step", "channel", "sample", "dim_1"),
                    0: ("step", "channel", "token", "sample"),
                    1: ("step", "channel", "sample", "token"),
                    None: ("step", "channel", "sample", "dim_1")}


def test_layers_selects_modules_and_the_parameters_under_them(tmp_path):
    torch.manual_seed(0)
    model = TinyLM(False)
    rec = ts.Recorder(tmp_path / "run.zarr")
    tokens = _tokens(False)
    with watch(model, rec, layers=["encoder.layers.1"]) as w:
        _loss(model, tokens, False).backward()
        w.step(0)
    rec.close()
    run = ts.open_run(tmp_path / "run.zarr")
    assert run.layers("weight") == sorted(n for n, _ in model.named_parameters()
                                          if n.startswith("encoder.layers.1."))
    assert run.layers("feature") == ["encoder.layers.1"]
    block = run["feature", "encoder.layers.1"]  # the residual stream after the block
    assert block.dims == ("step", "channel", "token", "sample")
    with torch.no_grad():
        ref = model.encoder(model.embed(tokens))  # the last block's output is the encoder's
    np.testing.assert_allclose(block.values[0], _to_store(ref, False), rtol=1e-5, atol=1e-6)


def test_hugging_face_model_gets_token_axis_and_qkv_features(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=VOCAB, hidden_size=D_MODEL, num_hidden_layers=1,
                                     num_attention_heads=HEADS, intermediate_size=32,
                                     max_position_embeddings=SEQ, hidden_dropout_prob=0.0,
                                     attention_probs_dropout_prob=0.0)
    model = transformers.BertModel(config)
    tokens = _tokens(True)
    rec = ts.Recorder(tmp_path / "run.zarr")
    seen = {}
    query = model.get_submodule("encoder.layer.0.attention.self.query")
    handle = query.register_forward_hook(lambda m, i, o: seen.setdefault("q", o.detach()))
    with watch(model, rec, kinds=("weight", "feature")) as w:
        model(tokens).last_hidden_state.sum().backward()
        w.step(0)
    handle.remove()
    rec.close()
    run = ts.open_run(tmp_path / "run.zarr")
    assert run.layers("weight") == sorted(n for n, _ in model.named_parameters())
    attention = "encoder.layer.0.attention.self"
    assert {f"{attention}.{p}" for p in ("query", "key", "value")} <= set(run.layers("feature"))
    q = run["feature", f"{attention}.query"]
    assert q.dims == ("step", "channel", "sample", "token")
    assert "PreTrainedModel" in q.attrs["sequence"]["source"]
    np.testing.assert_array_equal(q.values[0], _to_store(seen["q"], True))


def test_begin_pass_when_the_model_itself_is_not_called(tmp_path):
    torch.manual_seed(0)
    model = TinyLM(True)
    tokens = _tokens(True)
    rec = ts.Recorder(tmp_path / "run.zarr")
    with watch(model, rec, kinds=("weight", "grad", "feature")) as w:
        model.head(model.encoder(model.embed(tokens))).sum().backward()  # no model(...)
        with pytest.warns(UserWarning, match="no forward/backward pass ran"):
            w.step(0)  # nothing marked the pass: nothing captured
        model.zero_grad()
        w.begin_pass()
        hidden = model.encoder(model.embed(tokens))
        model.head(hidden).sum().backward()
        w.step(1)
    rec.close()
    run = ts.open_run(tmp_path / "run.zarr")
    assert run["weight", "head.weight"]["step"].values.tolist() == [1]
    np.testing.assert_array_equal(run["grad", "embed.weight"].sel(step=1).values,
                                  model.embed.weight.grad.numpy())
    np.testing.assert_array_equal(run["feature", "head"].sel(step=1).values,
                                  _to_store(model.head(hidden), True))
