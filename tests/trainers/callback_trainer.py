"""A trainer that reports through examples/trainbox_progress.py, driven as
the Hugging Face Trainer drives a callback (duck-typed state: no torch).
Prints the wall-clock time of each logging step for the latency test."""
import os, sys, time, types

sys.dont_write_bytecode = True  # leave the work tree as it was
sys.path.insert(0, sys.argv[1])
from trainbox_progress import TrainboxCallback  # noqa: E402

callback = TrainboxCallback()
state = types.SimpleNamespace(global_step=0, max_steps=120, epoch=0.0, is_world_process_zero=True)
for step in range(10, 121, 10):
    time.sleep(0.3)
    started = time.time()  # before the write: the latency includes it
    state.global_step, state.epoch = step, step / 120
    callback.on_log(None, state, None, logs={"loss": 3.0 - step / 60, "learning_rate": 5e-5})
    print(f"logged {step} {started:.6f}", flush=True)
