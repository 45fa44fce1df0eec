"""Hugging Face ``transformers`` callback: record a ``Trainer`` run with ``watch``.

``import tensorstats`` never imports this module; importing it imports
``transformers``. See ``docs/callbacks.md``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from numbers import Real
from typing import Any

try:
    from transformers import TrainerCallback
except ModuleNotFoundError as err:  # the ``hf`` extra is not installed
    if err.name != "transformers":
        raise
    raise ImportError("tensorstats.hf needs transformers: pip install 'tensorstats[hf]'") from err

from ._callback import RecorderOwner
from .collect.recorder import Recorder

__all__ = ["TensorStatsCallback"]

HF_PREFIX = "hf/"
"""Prefix of the scalars copied from the Trainer's own logs (``hf/loss``, ``hf/grad_norm``)."""
_NOT_LOGGED = frozenset({"epoch", "total_flos", "step"})
_NOT_LOGGED_END = ("_runtime", "_per_second")  # timings, not training quantities


def lr_scalars(optimizer: Any) -> dict[str, Any]:
    """The learning rate of each parameter group: ``lr``, or ``lr/<group>`` for several.

    ``<group>`` is the group's ``"name"`` entry if it has one, else its index.

    Examples
    --------
    >>> import torch
    >>> a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    >>> lr_scalars(torch.optim.SGD(a.parameters(), lr=0.1))
    {'lr': 0.1}
    >>> lr_scalars(torch.optim.SGD([{"params": a.parameters()},
    ...                             {"params": b.parameters(), "lr": 0.01}], lr=0.1))
    {'lr/0': 0.1, 'lr/1': 0.01}
    """
    groups = optimizer.param_groups
    if len(groups) == 1:
        return {"lr": groups[0]["lr"]}
    return {f"lr/{group.get('name', g)}": group["lr"] for g, group in enumerate(groups)}


def _output_loss(output: Any) -> Any:
    """The ``loss`` of a model output (a ``ModelOutput`` or a mapping), or None."""
    loss = output.get("loss") if isinstance(output, Mapping) else getattr(output, "loss", None)
    if hasattr(loss, "detach") and loss.numel() == 1:
        return loss.detach()
    return None


class TensorStatsCallback(RecorderOwner, TrainerCallback):
    """Record a ``transformers.Trainer`` run: :func:`tensorstats.torch.watch` on its model.

    Parameters
    ----------
    store : str, os.PathLike or Recorder
        Where to write: a store path or URL (a :class:`~tensorstats.Recorder`
        is opened there when training begins and closed when it ends), or a
        Recorder of yours (flushed, not closed, when training ends).
    every : int, callable or list of int, optional
        The logging schedule, as in :func:`tensorstats.torch.watch`.
    kinds : iterable of str, optional
        What to capture, as in :func:`~tensorstats.torch.watch`.
    layers : iterable, optional
        Which modules, as in :func:`~tensorstats.torch.watch`.
    probes : mapping, optional
        Fixed inputs run at logging steps, as in :func:`~tensorstats.torch.watch`.
    max_elements : int, optional
        Elements kept per channel, as in :func:`~tensorstats.torch.watch`.
    mode : str
        Mode of the Recorder opened at ``store`` (a path only); a second
        ``train`` with the same callback appends to the store (``mode="a"``).
    attrs : mapping, optional
        Run metadata written by the Recorder opened at ``store`` (a path only).
    **watch_kwargs
        Any other keyword argument of :func:`~tensorstats.torch.watch`; every
        argument left out takes watch's default.

    Notes
    -----
    - **Steps.** One step per optimizer step (HF runs the
      ``gradient_accumulation_steps`` micro-batches of a step before
      ``on_step_end``), labelled with ``state.global_step`` as it is *while
      that step's passes run*: 0, 1, 2, ... The Trainer's own logs
      (``state.log_history``, TensorBoard) label the same step
      ``state.global_step`` after it, one more: tensorstats step ``s`` is
      HF's step ``s + 1``.
    - **Scalars**, at every step: ``loss``, the mean over the step's
      micro-batches of the loss the model returned (``outputs.loss``;
      without one, e.g. a ``compute_loss`` of your own, there is none);
      the learning rate the step used, read before the scheduler moves
      on (:func:`lr_scalars`; HF's default AdamW has two parameter groups,
      ``lr/0`` and ``lr/1``). Whenever the Trainer logs (every
      ``logging_steps``), its numbers are copied as ``hf/loss``,
      ``hf/grad_norm``, ``hf/learning_rate``, ``hf/eval_loss``, ... at the
      last step they cover. ``hf/loss`` is what HF back-propagated: for
      models that take ``num_items_in_batch`` it is the sum, not the mean,
      of the micro-batch losses, so it can differ from ``loss``.
    - **Evaluation** during training is not recorded: when the Trainer is
      about to evaluate, the hooks are removed, and they are put back at the
      next step.
    - **Closing.** ``on_train_end`` removes the hooks and closes the Recorder
      (yours is flushed). The Trainer has no hook for a failed ``train()``:
      call :meth:`close` yourself (``try: ... finally: callback.close()``).
      In a multi-process run only the main process records.

    Examples
    --------
    >>> import os, tempfile, torch, tensorstats as ts
    >>> from transformers import BertConfig, BertForSequenceClassification
    >>> from transformers import PrinterCallback, Trainer, TrainingArguments
    >>> from tensorstats.hf import TensorStatsCallback
    >>> config = BertConfig(vocab_size=32, hidden_size=8, num_hidden_layers=1,
    ...                     num_attention_heads=2, intermediate_size=16, num_labels=2)
    >>> model = BertForSequenceClassification(config)
    >>> data = [{"input_ids": torch.randint(0, 32, (6,)), "labels": torch.tensor(i % 2)}
    ...         for i in range(8)]
    >>> tmp = tempfile.mkdtemp()
    >>> args = TrainingArguments(output_dir=tmp, max_steps=2, per_device_train_batch_size=2,
    ...                          gradient_accumulation_steps=2, report_to=[], use_cpu=True,
    ...                          save_strategy="no", disable_tqdm=True)
    >>> callback = TensorStatsCallback(os.path.join(tmp, "run.zarr"), kinds=("weight",))
    >>> trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[callback])
    >>> trainer.remove_callback(PrinterCallback)  # it prints the logs
    >>> _ = trainer.train()
    >>> run = ts.open_run(os.path.join(tmp, "run.zarr"))
    >>> run["weight", "bert.encoder.layer.0.attention.self.query.weight"]["step"].values
    array([0, 1])
    """

    def __init__(self, store: str | os.PathLike[str] | Recorder, *, every: Any = None,
                 kinds: Iterable[str] | None = None, layers: Iterable[Any] | None = None,
                 probes: Mapping[str, Any] | None = None, max_elements: int | None = None,
                 mode: str = "w-", attrs: Mapping[str, Any] | None = None,
                 **watch_kwargs: Any) -> None:
        self._configure(store, every=every, kinds=kinds, layers=layers, probes=probes,
                        max_elements=max_elements, mode=mode, attrs=attrs,
                        watch_kwargs=watch_kwargs)
        self.recorder: Recorder | None = None
        """The Recorder being written (None outside ``train``, or off the main process)."""
        self.watcher: Any = None
        """The :class:`~tensorstats.torch.Watcher` on the model (None while detached)."""
        self._model: Any = None
        self._optimizer: Any = None
        self._loss_hook: Any = None
        self._lrs: dict[str, Any] = {}
        self._losses: list[Any] = []
        self._logged: dict[str, int] = {}

    # ------------------------------------------------------------ recorder
    def close(self) -> None:
        """Remove the hooks and close the Recorder the callback opened (flush one of yours)."""
        self._detach()
        if self._loss_hook is not None:
            self._loss_hook.remove()
            self._loss_hook = None
        self._model = self._optimizer = None
        self._release()

    # ------------------------------------------------------------- watcher
    def _attach(self, start_step: int) -> None:
        self._watch(self._model, start_step)

    def _detach(self) -> None:
        self._unwatch()

    def _keep_loss(self, module: Any, args: Any, output: Any) -> None:
        import torch

        if module.training and torch.is_grad_enabled():
            loss = _output_loss(output)
            if loss is not None:
                self._losses.append(loss)

    # --------------------------------------------------------------- hooks
    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None,
                       optimizer: Any = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        if model is None:
            raise ValueError("TensorStatsCallback.on_train_begin: the Trainer passed no model")
        self.close()  # left open by an earlier train() that failed
        self.recorder = self._open()
        self._model, self._optimizer = model, optimizer
        self._losses, self._lrs, self._logged = [], {}, {}
        self._loss_hook = model.register_forward_hook(self._keep_loss)
        self._attach(state.global_step)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.recorder is not None and self.watcher is None:  # after an evaluation
            self._attach(state.global_step)

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any,
                              optimizer: Any = None, **kwargs: Any) -> None:
        opt = optimizer if optimizer is not None else self._optimizer
        if self.recorder is not None and opt is not None:
            self._lrs = lr_scalars(opt)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.recorder is None:
            return
        losses, self._losses = self._losses, []
        loss = sum(losses) / len(losses) if losses else None
        lrs, self._lrs = self._lrs, {}
        self.watcher.step(state.global_step - 1, loss=loss, **lrs)
        if control.should_evaluate:  # its forward passes must not count as training passes
            self._detach()

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.recorder is not None and control.should_evaluate:
            self._detach()

    def on_log(self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None,
               **kwargs: Any) -> None:
        step = state.global_step - 1
        if self.recorder is None or not logs or step < 0:
            return
        for key, value in logs.items():
            if (key in _NOT_LOGGED or key.startswith("train_") or key.endswith(_NOT_LOGGED_END)
                    or isinstance(value, bool)
                    or not isinstance(value, Real) or self._logged.get(key, -1) >= step):
                continue
            self.recorder.record_scalar(HF_PREFIX + key, value, step=step)
            self._logged[key] = step

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.close()
