"""What an unmodified Hugging Face Trainer (transformers 5.x) leaves: a
checkpoint-N/ written in place with trainer_state.json near the end, then
the final trainer_state.json of save_state(). Prints when each state is
written."""
import json, os, time

out = os.environ["TRAINBOX_OUTPUT_DIR"]
history = []
for step in range(10, 61, 10):
    time.sleep(0.3)
    started = time.time()  # before the write: the latency includes it
    history.append({"loss": 3.0 - step / 30, "step": step, "epoch": step / 60})
    state = {"global_step": step, "max_steps": 60, "epoch": step / 60, "log_history": history}
    ckpt = os.path.join(out, f"checkpoint-{step}")
    os.makedirs(ckpt)
    with open(os.path.join(ckpt, "model.safetensors"), "wb") as f:
        f.write(os.urandom(4096))
    with open(os.path.join(ckpt, "trainer_state.json"), "w") as f:
        json.dump(state, f)
    print(f"logged {step} {started:.6f}", flush=True)
