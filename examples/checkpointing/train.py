#!/usr/bin/env python3
"""A training loop that survives carbonshift's pauses: checkpoint on SIGTERM, resume on start.

carbonshift pauses a PauseAndResume job by suspending its batch/v1 Job. Kubernetes then
deletes the pods: each container gets SIGTERM, then SIGKILL once the pod's
terminationGracePeriodSeconds run out. Resuming creates NEW pods, which start this script
from the top. So the script must:

  1. on start, load the newest checkpoint if there is one (the volume outlives the pods);
  2. on SIGTERM, finish the current step, write a checkpoint atomically, exit 143;
  3. also checkpoint every N steps, so even a SIGKILL (node loss, grace period too short)
     loses at most N steps.

The model is PyTorch when torch is importable (the pattern for real GPU jobs) and a tiny
pure-Python linear regression otherwise, so the example also runs on a laptop cluster:

    python train.py --checkpoint-dir /tmp/ckpt --steps 120 --step-seconds 0.5
    # press Ctrl-C or `kill -TERM <pid>` midway, run it again: it continues where it stopped
"""

import argparse
import json
import os
import random
import signal
import sys
import time

try:  # PyTorch if present; the checkpoint logic is the same either way.
    import torch
except ImportError:  # pragma: no cover - depends on the image
    torch = None

# Exit code after a checkpoint on SIGTERM: 128 + SIGTERM, what a killed process reports.
# NOT 0: with restartPolicy Never a pod that exits 0 counts as a completed Job, so a paused
# job would look finished. The example's podFailurePolicy ignores 143, so pauses never
# count against backoffLimit either.
EXIT_PAUSED = 143

stop_requested = False


def on_sigterm(signum, _frame):
    # Only set a flag: checkpointing inside a signal handler could interleave with a
    # half-done optimiser step. The loop checks the flag between steps.
    global stop_requested
    stop_requested = True
    print(f"received signal {signum}: checkpointing after this step", flush=True)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint-dir", default=os.environ.get("CHECKPOINT_DIR", "/checkpoints"))
    p.add_argument("--steps", type=int, default=int(os.environ.get("TRAIN_STEPS", "300")))
    p.add_argument("--step-seconds", type=float, default=float(os.environ.get("STEP_SECONDS", "1.0")),
                   help="simulated compute per step (stands in for a forward/backward pass)")
    p.add_argument("--checkpoint-every", type=int, default=int(os.environ.get("CHECKPOINT_EVERY", "20")))
    return p.parse_args()


# --- model: torch or pure Python -------------------------------------------------------------

class TorchModel:
    def __init__(self):
        torch.manual_seed(0)
        self.net = torch.nn.Linear(8, 1)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=0.05)
        self.true_w = torch.arange(1.0, 9.0)

    def step(self, step):
        g = torch.Generator().manual_seed(step)  # data depends on the step: resumable
        x = torch.randn(64, 8, generator=g)
        y = x @ self.true_w + 0.5
        loss = torch.nn.functional.mse_loss(self.net(x).squeeze(1), y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss.item()

    def state(self):
        return {"model": self.net.state_dict(), "optimizer": self.opt.state_dict()}

    def restore(self, state):
        self.net.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])

    def save(self, payload, path):
        torch.save(payload, path)

    def load(self, path):
        return torch.load(path, weights_only=False)


class TinyModel:
    """y = w.x + b by SGD, in plain Python."""

    def __init__(self):
        self.w = [0.0] * 8
        self.b = 0.0
        self.true_w = [float(i) for i in range(1, 9)]

    def step(self, step):
        rng = random.Random(step)  # data depends on the step: resumable
        loss = 0.0
        gw, gb = [0.0] * 8, 0.0
        for _ in range(64):
            x = [rng.gauss(0, 1) for _ in range(8)]
            err = sum(wi * xi for wi, xi in zip(self.w, x)) + self.b - (sum(t * xi for t, xi in zip(self.true_w, x)) + 0.5)
            loss += err * err / 64
            gw = [g + 2 * err * xi / 64 for g, xi in zip(gw, x)]
            gb += 2 * err / 64
        self.w = [wi - 0.05 * g for wi, g in zip(self.w, gw)]
        self.b -= 0.05 * gb
        return loss

    def state(self):
        return {"w": self.w, "b": self.b}

    def restore(self, state):
        self.w, self.b = state["w"], state["b"]

    def save(self, payload, path):
        with open(path, "w") as f:
            json.dump(payload, f)

    def load(self, path):
        with open(path) as f:
            return json.load(f)


# --- checkpoints -------------------------------------------------------------------------------

def checkpoint_path(directory, model):
    return os.path.join(directory, "last.pt" if isinstance(model, TorchModel) else "last.json")


def save_checkpoint(model, step, directory):
    """Write to a temporary file and rename it: a SIGKILL mid-write never leaves a torn
    checkpoint, because rename within a filesystem is atomic."""
    os.makedirs(directory, exist_ok=True)
    final = checkpoint_path(directory, model)
    tmp = final + ".tmp"
    model.save({"step": step, "state": model.state(), "saved_at": time.time()}, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    print(f"checkpoint saved at step {step} -> {final}", flush=True)


def load_checkpoint(model, directory):
    path = checkpoint_path(directory, model)
    if not os.path.exists(path):
        print("no checkpoint: starting from step 0", flush=True)
        return 0
    payload = model.load(path)
    model.restore(payload["state"])
    print(f"resumed from checkpoint at step {payload['step']} ({path})", flush=True)
    return payload["step"]


def main():
    args = parse_args()
    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, on_sigterm)
    model = TorchModel() if torch is not None else TinyModel()
    print(f"model: {'pytorch' if torch is not None else 'pure python'}; {args.steps} steps", flush=True)

    step = load_checkpoint(model, args.checkpoint_dir)
    while step < args.steps:
        loss = model.step(step)
        time.sleep(args.step_seconds)
        step += 1
        if step % 10 == 0:
            print(f"step {step}/{args.steps} loss {loss:.4f}", flush=True)
        if stop_requested:
            save_checkpoint(model, step, args.checkpoint_dir)
            print("paused: exiting so the pod can stop; the next pod resumes from here", flush=True)
            return EXIT_PAUSED
        if step % args.checkpoint_every == 0:
            save_checkpoint(model, step, args.checkpoint_dir)

    if step % args.checkpoint_every != 0:
        save_checkpoint(model, step, args.checkpoint_dir)
    print(f"training finished at step {step}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
