"""What an unmodified Lightning run with CSVLogger leaves: rows appended
to lightning_logs/version_0/metrics.csv at each flush. Prints when each
flush happened."""
import os, time

logs = os.path.join(os.environ["TRAINBOX_JOB_DIR"], "lightning_logs", "version_0")
os.makedirs(logs)
path = os.path.join(logs, "metrics.csv")
rows = ["epoch,step,train_loss_step,val_loss"]
for step in range(9, 100, 10):
    time.sleep(0.3)
    started = time.time()  # before the write: the latency includes it
    rows.append(f"0,{step},{3.0 - step / 50},")
    # CSVLogger rewrites the file at each flush.
    with open(path, "w") as f:
        f.write("\n".join(rows) + "\n")
    print(f"logged {step} {started:.6f}", flush=True)
