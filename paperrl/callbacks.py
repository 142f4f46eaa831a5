"""Trainer callbacks: BEMA (fixed), the metrics file, and a clean stop on SIGINT/SIGTERM."""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path

import torch
from transformers import TrainerCallback


class BEMA(TrainerCallback):
    """Bias-corrected EMA of the weights (BEMA Algorithm 1), for full and for PEFT models.

    theta'_t = EMA_t + alpha_t (theta_t - theta_0),  EMA_t = (1 - beta_t) EMA_{t-1} + beta_t theta_t,
    beta_t = (rho + gamma t)^-kappa (floored at min_ema_multiplier),  alpha_t = (rho + gamma t)^-eta,
    with t counted from `update_after` (tau). Unlike TRL 1.16's BEMACallback it averages only the
    trainable parameters by name (frozen ones and LoRA bases are left alone), never rebuilds the
    model from its config (which breaks PEFT models), and counts t from tau as the paper does.
    The averaged weights are written to OUTPUT_DIR/bema at the end, and kept in checkpoints.
    """

    def __init__(self, update_freq=400, ema_power=0.5, bias_power=0.2, lag=10, update_after=0,
                 multiplier=1.0, min_ema_multiplier=0.0, device="cpu"):
        self.update_freq, self.ema_power, self.bias_power = update_freq, ema_power, bias_power
        self.lag, self.update_after, self.multiplier = lag, update_after, multiplier
        self.min_ema_multiplier, self.device = min_ema_multiplier, device
        self.params: dict[str, torch.nn.Parameter] = {}
        self.theta0: dict[str, torch.Tensor] = {}
        self.ema: dict[str, torch.Tensor] = {}
        self.bema: dict[str, torch.Tensor] = {}
        self.updates = 0

    @staticmethod
    def _unwrap(model):
        while hasattr(model, "module"):
            model = model.module
        return model

    def beta(self, t: int) -> float:
        return max((self.lag + self.multiplier * t) ** (-self.ema_power), self.min_ema_multiplier)

    def alpha(self, t: int) -> float:
        return (self.lag + self.multiplier * t) ** (-self.bias_power)

    @torch.no_grad()
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.params = {n: p for n, p in self._unwrap(model).named_parameters() if p.requires_grad}
        if not self.theta0:  # not restored from a checkpoint
            self._snapshot()

    def _snapshot(self):
        self.theta0 = {n: p.detach().to(self.device, copy=True) for n, p in self.params.items()}
        self.ema = {n: t.clone() for n, t in self.theta0.items()}
        self.bema = {n: t.clone() for n, t in self.theta0.items()}

    @torch.no_grad()
    def on_step_end(self, args, state, control, **kwargs):
        t = state.global_step - self.update_after
        if t < 0:
            return
        if t == 0:
            self._snapshot()
        elif t % self.update_freq == 0:
            beta, alpha = self.beta(t), self.alpha(t)
            for name, param in self.params.items():
                theta = param.detach().to(self.device)
                self.ema[name].mul_(1 - beta).add_(theta, alpha=beta)
                self.bema[name] = self.ema[name] + alpha * (theta - self.theta0[name])
            self.updates += 1

    def swap_in(self, model) -> dict:
        """Load the BEMA weights into the model; returns the raw weights to put back."""
        raw = {}
        with torch.no_grad():
            for name, param in self.params.items():
                raw[name] = param.detach().clone()
                param.copy_(self.bema[name].to(param.device))
        return raw

    def swap_out(self, raw: dict) -> None:
        with torch.no_grad():
            for name, param in self.params.items():
                param.copy_(raw[name])

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                torch.save({"theta0": self.theta0, "ema": self.ema, "bema": self.bema, "updates": self.updates},
                           folder / "bema_state.pt")

    def restore(self, checkpoint: str) -> None:
        path = Path(checkpoint) / "bema_state.pt"
        if path.exists():
            state = torch.load(path, map_location=self.device)
            self.theta0, self.ema, self.bema, self.updates = state["theta0"], state["ema"], state["bema"], state["updates"]

    def on_train_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if state.is_world_process_zero and self.params:
            model = self._unwrap(model)
            raw = self.swap_in(model)
            model.save_pretrained(Path(args.output_dir) / "bema")
            self.swap_out(raw)


class MetricsFile(TrainerCallback):
    """metrics.jsonl: one JSON object per logging event, written as it happens (main process).

    One line per event, flushed at once: a killed run loses at most the line being written,
    and `--resume` drops the lines logged after the checkpoint it resumes from."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: list[dict] = []
        self._file = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        row = {"step": state.global_step}
        for key, value in logs.items():
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            row[key] = value
        self.rows.append(row)
        if self._file is None:
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()

    def on_train_end(self, args, state, control, **kwargs):
        self.close()

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None


class GracefulStop(TrainerCallback):
    """SIGINT/SIGTERM (or a component's request): finish the step, save a checkpoint, stop.

    A second signal aborts at once."""

    def __init__(self):
        self.signal: int | None = None
        self.reason: str | None = None
        self._previous = {}

    def request_stop(self, reason: str) -> None:
        self.reason = reason

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        if self.signal is not None:  # second signal: the user really wants out
            raise KeyboardInterrupt
        self.signal = signum

    def on_step_end(self, args, state, control, **kwargs):
        if self.signal is not None or self.reason is not None:
            control.should_save = True
            control.should_training_stop = True
