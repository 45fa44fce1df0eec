"""Writer process for test_crash.py: records until it is killed.

Prints each step after every series of that step was recorded, so the parent
knows which steps were committed before it sent SIGKILL.
"""

import sys

import numpy as np

import tensorstats as ts

LAYERS = ("conv1", "conv2")


def main(path: str) -> None:
    start = {}
    try:
        run = ts.open_run(path)
        for layer in LAYERS:
            ok = ("feature", layer) in run
            start[layer] = int(run["feature", layer]["step"][-1]) + 1 if ok else 0
        start["loss"] = int(run.scalars["step"][-1]) + 1 if "loss" in run.scalars else 0
    except FileNotFoundError:
        start = dict.fromkeys((*LAYERS, "loss"), 0)
    rec = ts.Recorder(path, mode="a")
    step = min(start.values())
    while True:
        for i, layer in enumerate(LAYERS):
            if step >= start[layer]:
                x = np.full((32, 16, 16, 16), step + i / 10, np.float32)  # 512 KiB
                rec.record("feature", layer, x, step=step, channel_axis=1)
        if step >= start["loss"]:
            rec.record_scalar("loss", step, step=step)
        print(step, flush=True)
        step += 1


if __name__ == "__main__":
    main(sys.argv[1])
