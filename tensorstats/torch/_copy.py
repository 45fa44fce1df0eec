"""Host copies of captured tensors that later in-place changes cannot touch."""

from __future__ import annotations

from typing import Any

from ..collect.buffers import aligned_empty


class HostCopies:
    """Copies tensors to the host into buffers reused from one logged step to the next.

    A logged pass starts by flushing the recorder (see ``Watcher``), so the
    previous logged step's buffers are written and free again: memory stays
    bounded by one logged step's tensors, and no logged step allocates.
    """

    def __init__(self, torch: Any) -> None:
        self._torch = torch
        self._buffers: dict[tuple[Any, ...], Any] = {}
        self._events: list[Any] = []

    def _buffer(self, slot: tuple[Any, ...], shape: Any, dtype: Any) -> Any:
        torch = self._torch
        buf = self._buffers.get(slot)
        if buf is None or tuple(buf.shape) != tuple(shape) or buf.dtype != dtype:
            numel = 1
            for n in shape:
                numel *= int(n)
            itemsize = torch.empty((), dtype=dtype).element_size()
            if numel == 0:
                buf = torch.empty(shape, dtype=dtype)
            else:
                raw = aligned_empty(numel * itemsize)
                buf = torch.frombuffer(raw, dtype=dtype, count=numel).view(tuple(shape))
                buf._tensorstats_raw = raw  # keep the memory alive with the tensor
            self._buffers[slot] = buf
        return buf

    def grab(self, t: Any, channel_axis: int | None = None, slot: tuple[Any, ...] = ()) -> Any:
        """A private host copy of ``t``, in ``t``'s axis order.

        With a ``channel_axis``, the copy is laid out channel-first (the
        store's layout) and a view in ``t``'s axis order is returned, so the
        recorder needs no second, transposing copy: one copy per tensor, done
        by torch, into the buffer of ``slot``. Device tensors are copied to
        pinned memory without blocking; :meth:`sync` waits for them.
        """
        t = t.detach()
        moved = t.movedim(channel_axis, 0) if channel_axis else t
        if t.device.type == "cpu":
            host = self._buffer(slot, moved.shape, t.dtype)
            host.copy_(moved)
        else:
            moved = moved.contiguous()
            host = self._torch.empty(moved.shape, dtype=t.dtype, device="cpu",
                                     pin_memory=t.device.type == "cuda")
            host.copy_(moved, non_blocking=True)
            if t.device.type == "cuda":
                event = self._torch.cuda.Event()
                event.record()
                self._events.append(event)
        return host.movedim(0, channel_axis) if channel_axis else host

    def sync(self) -> None:
        """Wait for the device-to-host copies started since the last call."""
        for event in self._events:
            event.synchronize()
        self._events.clear()

    def forget_pending(self) -> None:
        """Drop the events of copies whose tensors will not be recorded."""
        self._events.clear()
