"""Writer process for test_live_reading.py: records N steps, slowly, then closes.

Every value is a function of (layer, step), so a reader can check any step it
sees. Prints "done" after close.
"""

import sys
import time

import numpy as np

import tensorstats as ts

LAYERS = ("a", "b", "c")


def value(layer: str, step: int) -> np.ndarray:
    return np.full((4, 64, 64), step * 10 + LAYERS.index(layer), np.float32)


def main(path: str, steps: int, asynchronous: bool) -> None:
    with ts.Recorder(path, asynchronous=asynchronous) as rec:
        for step in range(steps):
            for layer in LAYERS:
                rec.record("feature", layer, value(layer, step), step=step)
            rec.record_scalar("loss", 1.0 / (step + 1), step=step)
            if step % 4 == 0:
                rec.flush()
            time.sleep(0.03)
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3] == "async")
