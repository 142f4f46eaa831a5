"""DAPO dynamic sampling (DAPO §3.2) on TRL's GRPOTrainer, which lacks it.

A group whose rewards are all equal has zero advantage and teaches nothing. For every rollout,
each process generates and scores groups, keeps those whose filter metric varies within the
group, and generates again until it holds exactly the rollout's number of groups:

- every process runs the same number of generation rounds with the same number of prompts
  (generation under ZeRO-3/FSDP and TRL's reward gathering are collective); whether to go on
  is decided jointly from every process's count of kept groups;
- a round asks for (the largest shortfall over processes) x `oversample` new prompts; the
  first round is TRL's own batch plus the oversampling extra;
- surplus informative groups are discarded and counted (`dynamic_sampling/groups_surplus`);
- advantages are recomputed over the kept groups only, so `scale_rewards="batch"` uses the
  batch that is trained;
- after `max_rounds` rounds the missing slots are filled with filtered groups (advantage 0,
  no gradient, as plain TRL would train them) and a warning is logged; with
  `on_exhausted: stop` the run then saves a checkpoint after this step and stops cleanly;
- the rollout's logged metrics (`reward`, `frac_reward_zero_std`, ...) describe the kept batch,
  with the counters `dynamic_sampling/*` next to them.
"""

from __future__ import annotations

import logging
import math
import random

import torch

logger = logging.getLogger("paperrl")


def _pad_cat(tensors: list[torch.Tensor], left: bool, value) -> torch.Tensor:
    width = max(t.shape[1] for t in tensors)
    padded = []
    for t in tensors:
        pad = torch.full((t.shape[0], width - t.shape[1], *t.shape[2:]), value, dtype=t.dtype, device=t.device)
        padded.append(torch.cat([pad, t] if left else [t, pad], dim=1))
    return torch.cat(padded)


def _select(out: dict, rows: torch.Tensor, batch: int) -> dict:
    return {k: (v[rows] if torch.is_tensor(v) and v.dim() > 0 and v.shape[0] == batch else v) for k, v in out.items()}


def _concat(parts: list[dict], pad_id: int) -> dict:
    merged = {}
    for key, first in parts[0].items():
        values = [p[key] for p in parts]
        if not torch.is_tensor(first) or first.dim() == 0:
            merged[key] = first
        elif first.dim() == 1:
            merged[key] = torch.cat(values)
        else:
            value = pad_id if key.endswith("_ids") else 0
            merged[key] = _pad_cat(values, left=key.startswith("prompt"), value=value)
    return merged


def group_advantages(rewards: torch.Tensor, group: int, scale: str | bool) -> torch.Tensor:
    """GRPO's advantage over a batch of whole groups: (r - group mean) / (std + 1e-4)."""
    grouped = rewards.view(-1, group)
    advantages = (grouped - grouped.nanmean(dim=1, keepdim=True)).view(-1)
    if scale in ("group", True):
        std = _nanstd(grouped, dim=1).repeat_interleave(group)
    elif scale == "batch":
        std = _nanstd(rewards.view(1, -1), dim=1).expand_as(rewards)
    else:
        return torch.nan_to_num(advantages, nan=0.0)
    return torch.nan_to_num(advantages / (std + 1e-4), nan=0.0)


def _nanstd(x: torch.Tensor, dim: int) -> torch.Tensor:
    mean = x.nanmean(dim=dim, keepdim=True)
    count = (~torch.isnan(x)).sum(dim=dim)
    var = ((x - mean) ** 2).nansum(dim=dim) / (count - 1).clamp(min=1)
    return var.sqrt()


def with_dynamic_sampling(trainer_cls, settings: dict):
    """A subclass of TRL's GRPOTrainer that fills every rollout with informative groups."""

    class DynamicSamplingGRPOTrainer(trainer_cls):
        dynamic_sampling = dict(settings)

        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
            rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
            self._paperrl_rewards = rewards  # every process's rows, as TRL gathers them
            return rewards

        def _paperrl_request_stop(self, reason: str) -> None:
            for callback in self.callback_handler.callbacks:
                if hasattr(callback, "request_stop"):
                    callback.request_stop(reason)

        def _metric_column(self, rewards_per_func: torch.Tensor) -> torch.Tensor:
            metric = self.dynamic_sampling["metric"]
            if metric == "reward":
                return (rewards_per_func * self.reward_weights.to(rewards_per_func.device)).nansum(dim=1)
            return rewards_per_func[:, self.reward_func_names.index(metric)]

        def _extra_rows(self, groups: int) -> list[dict]:
            if groups <= 0:
                return []
            if not hasattr(self, "_paperrl_rng"):
                self._paperrl_rng = random.Random(self.args.seed * 1000 + self.accelerator.process_index)
            size = len(self.train_dataset)
            rows = []
            for _ in range(groups):
                row = self.train_dataset[self._paperrl_rng.randrange(size)]
                rows += [row] * self.num_generations
            return rows

        def _generate_and_score_completions(self, inputs):
            if not self.model.training:
                return super()._generate_and_score_completions(inputs)
            g = self.num_generations
            if len(inputs) % g:
                raise ValueError("dynamic sampling needs whole groups on every process: make "
                                 "per_device_train_batch_size x steps_per_generation a multiple of num_generations")
            need = len(inputs) // g
            ds = self.dynamic_sampling
            mode = "train"
            marks = {k: len(v) for k, v in self._metrics[mode].items()}
            kept_parts, kept_rewards, fill_parts, fill_rewards = [], [], [], []
            kept = generated = rounds = 0
            batch = list(inputs) + self._extra_rows(math.ceil(need * (ds["oversample"] - 1)))
            while True:
                rounds += 1
                out = super()._generate_and_score_completions(batch)
                n = len(batch)
                start = self.accelerator.process_index * n
                local = self._paperrl_rewards[start:start + n]
                metric = self._metric_column(local).view(-1, g)
                informative = ~torch.isclose(_nanstd(metric, dim=1), torch.zeros(1, device=metric.device))
                generated += n // g
                rows = torch.arange(n, device=local.device).view(-1, g)
                good, bad = rows[informative].flatten(), rows[~informative].flatten()
                take = min(len(good) // g, need - kept)
                if take:
                    kept_parts.append(_select(out, good[: take * g], n))
                    kept_rewards.append(local[good[: take * g]])
                    kept += take
                surplus_here = len(good) // g - take
                if len(bad) and sum(len(r) for r in fill_rewards) < need * g:
                    fill_parts.append(_select(out, bad, n))
                    fill_rewards.append(local[bad])
                shortfall = torch.tensor([need - kept], device=self.accelerator.device)
                worst = int(self.accelerator.gather(shortfall).max().item())  # a joint decision
                self._paperrl_surplus = getattr(self, "_paperrl_surplus", 0) + surplus_here
                if worst == 0 or rounds >= ds["max_rounds"]:
                    break
                batch = self._extra_rows(max(1, math.ceil(worst * ds["oversample"])))
            exhausted = kept < need
            if worst > 0:
                message = (f"dynamic sampling: after {rounds} generation rounds only {kept} of {need} groups on this "
                           f"process are informative (max_rounds={ds['max_rounds']}); the rest of the rollout is "
                           "filled with zero-advantage groups")
                logger.warning(message)
                if ds["on_exhausted"] == "stop":
                    self._paperrl_request_stop(message + "; stopped after this step (on_exhausted=stop): resume "
                                               "with --resume, e.g. with a larger dynamic_sampling.max_rounds")
            missing = (need - kept) * g
            if missing:
                fill = _concat(fill_parts, self._tokenizer.pad_token_id)
                rows = torch.arange(missing, device=fill["completion_ids"].device)
                kept_parts.append(_select(fill, rows, fill["completion_ids"].shape[0]))
                kept_rewards.append(torch.cat(fill_rewards)[:missing])
            result = _concat(kept_parts, self._tokenizer.pad_token_id)
            rewards_per_func = torch.cat(kept_rewards)
            # what this rollout trains on, for tests and debugging: local rows, one per completion
            self.last_rollout = {"rewards_per_func": rewards_per_func, "metric": self._metric_column(rewards_per_func),
                                 "rounds": rounds, "kept": kept, "need": need}
            self._finish_rollout(result, rewards_per_func, marks, rounds, generated, kept, need, exhausted)
            return result

        def _finish_rollout(self, result, rewards_per_func, marks, rounds, generated, kept, need, exhausted):
            """Advantages over the kept batch, and metrics that describe it."""
            g = self.num_generations
            all_rewards = self.accelerator.gather(rewards_per_func)
            total = (all_rewards * self.reward_weights.to(all_rewards.device)).nansum(dim=1)
            advantages = group_advantages(total, g, self.scale_rewards)
            n = rewards_per_func.shape[0]
            start = self.accelerator.process_index * n
            result["advantages"] = advantages[start:start + n]
            result["num_items_in_batch"] = self.accelerator.gather(result["completion_mask"].sum()).sum()

            metrics = self._metrics["train"]
            for key, mark in marks.items():  # drop what each generation round logged ...
                del metrics[key][mark:]
            for key in [k for k in metrics if k not in marks and k != "num_tokens"]:
                del metrics[key]
            lengths = self.accelerator.gather(result["completion_mask"].sum(dim=1).float())
            grouped_std = _nanstd(total.view(-1, g), dim=1) if self.scale_rewards != "batch" else \
                _nanstd(total.view(1, -1), dim=1)
            counts = self.accelerator.gather(torch.tensor(
                [float(rounds), float(generated), float(kept), float(need), float(exhausted),
                 float(getattr(self, "_paperrl_surplus", 0))], device=self.accelerator.device)).view(-1, 6)
            self._paperrl_surplus = 0
            add = {  # ... and log the batch that is trained
                "reward": total.nanmean().item(),
                "reward_std": _nanstd(total.view(1, -1), dim=1).item(),
                "frac_reward_zero_std": torch.isclose(grouped_std, torch.zeros_like(grouped_std)).float().mean().item(),
                "completions/mean_length": lengths.mean().item(),
                "completions/min_length": lengths.min().item(),
                "completions/max_length": lengths.max().item(),
                "dynamic_sampling/rounds": counts[:, 0].max().item(),
                "dynamic_sampling/groups_generated": counts[:, 1].sum().item(),
                "dynamic_sampling/groups_kept": counts[:, 2].sum().item(),
                "dynamic_sampling/fraction_kept": (counts[:, 2].sum() / counts[:, 1].sum()).item(),
                "dynamic_sampling/groups_surplus": counts[:, 5].sum().item(),
                "dynamic_sampling/exhausted": counts[:, 4].max().item(),
            }
            for i, name in enumerate(self.reward_func_names):
                add[f"rewards/{name}/mean"] = torch.nanmean(all_rewards[:, i]).item()
                add[f"rewards/{name}/std"] = _nanstd(all_rewards[:, i].view(1, -1), dim=1).item()
            for key, value in add.items():
                metrics[key].append(value)

    DynamicSamplingGRPOTrainer.__name__ = f"DynamicSampling{trainer_cls.__name__}"
    return DynamicSamplingGRPOTrainer
