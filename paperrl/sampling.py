"""DAPO dynamic sampling (DAPO §3.2) on TRL's GRPOTrainer, which lacks it.

A group whose rewards are all equal has zero advantage and teaches nothing. For every rollout,
each process generates and scores groups with TRL's own generation and reward code, keeps those
whose filter metric varies within the group, and generates again until it holds exactly the
rollout's number of groups. Then the kept completions and their rewards are handed back to TRL's
own `_generate_and_score_completions`, which computes masks, log-probabilities, advantages
(with every option TRL has: scale_rewards, multi_objective_aggregation, unscorable rows) and the
logged metrics on the kept batch, exactly as for a rollout it had sampled itself:

- every process runs the same number of generation rounds with the same number of prompts
  (generation under ZeRO-3/FSDP and TRL's reward gathering are collective); whether to go on
  is decided jointly from every process's count of kept groups;
- a round asks for (the largest shortfall over processes) x `oversample` new prompts; the
  first round is TRL's own batch plus the oversampling extra;
- surplus informative groups are discarded and counted (`dynamic_sampling/groups_surplus`);
- after `max_rounds` rounds the missing slots are filled with filtered groups (advantage 0,
  no gradient, as plain TRL would train them) and a warning is logged; with
  `on_exhausted: stop` the run then saves a checkpoint after this step and stops cleanly;
- the rollout's logged metrics (`reward`, `frac_reward_zero_std`, ...) describe the kept batch,
  with the counters `dynamic_sampling/*` next to them.

TRL internals relied on (pinned in tests/contract): `_generate(prompts)` returns completion ids
second and sampling log-probabilities fifth; `_generate_single_turn` returns (ids, log-probs);
`_calculate_rewards` returns every process's rows, gathered.
"""

from __future__ import annotations

import logging
import math
import random

import torch

logger = logging.getLogger("paperrl")


def _group_std(values: torch.Tensor, group: int) -> torch.Tensor:
    """Standard deviation within each group, NaN (unscorable) entries left out."""
    grouped = values.view(-1, group)
    mean = grouped.nanmean(dim=1, keepdim=True)
    count = (~torch.isnan(grouped)).sum(dim=1)
    return (((grouped - mean) ** 2).nansum(dim=1) / (count - 1).clamp(min=1)).sqrt()


class _Replay:
    """For one call of TRL's `_generate_and_score_completions`: its generation step returns the kept
    completions and its reward step the kept rewards, so everything else is TRL's own code."""

    def __init__(self, trainer, completion_ids: list, logprobs: list | None, rewards_per_func: torch.Tensor):
        self.trainer, self.ids, self.logprobs, self.rewards = trainer, completion_ids, logprobs, rewards_per_func

    _PATCHED = ("_generate_single_turn", "_calculate_rewards")

    def __enter__(self):
        t = self.trainer
        self.saved = {name: vars(t)[name] for name in self._PATCHED if name in vars(t)}
        t._generate_single_turn = lambda *args, **kwargs: (self.ids, self.logprobs)
        t._calculate_rewards = lambda *args, **kwargs: t.accelerator.gather(self.rewards)
        return self

    def __exit__(self, *exc):
        for name in self._PATCHED:  # back to what was there: the class's methods, or an instance's own
            delattr(self.trainer, name)
        vars(self.trainer).update(self.saved)


def with_dynamic_sampling(trainer_cls, settings: dict):
    """A subclass of TRL's GRPOTrainer that fills every rollout with informative groups."""

    class DynamicSamplingGRPOTrainer(trainer_cls):
        dynamic_sampling = dict(settings)

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

        def _score_round(self, batch: list[dict]):
            """TRL's generation and reward code on one round's rows: (ids, log-probs, local rewards per function)."""
            prompts = [row["prompt"] for row in batch]
            generated = self._generate(prompts)
            completion_ids, completions, logprobs = generated[1], generated[3], generated[4]
            rewards = self._calculate_rewards(batch, prompts, completions, completion_ids)
            start = self.accelerator.process_index * len(batch)
            return completion_ids, logprobs, rewards[start:start + len(batch)]

        def _generate_and_score_completions(self, inputs):
            if not self.model.training:
                return super()._generate_and_score_completions(inputs)
            g = self.num_generations
            if len(inputs) % g:
                raise ValueError("dynamic sampling needs whole groups on every process: make "
                                 "per_device_train_batch_size x steps_per_generation a multiple of num_generations")
            need = len(inputs) // g
            ds = self.dynamic_sampling
            metrics = self._metrics["train"]
            marks = {k: len(v) for k, v in metrics.items()}
            kept, fill = [], []  # (row, ids, log-probs, rewards) per completion, whole groups
            generated = rounds = surplus = 0
            batch = list(inputs) + self._extra_rows(math.ceil(need * (ds["oversample"] - 1)))
            while True:
                rounds += 1
                ids, logprobs, rewards = self._score_round(batch)
                metric = self._metric_column(rewards)
                generated += len(batch) // g
                for group in range(len(batch) // g):
                    rows = range(group * g, (group + 1) * g)
                    entries = [(batch[i], ids[i], logprobs[i] if logprobs is not None else None, rewards[i])
                               for i in rows]
                    if not torch.isclose(_group_std(metric[rows.start:rows.stop], g),
                                         torch.zeros(1, device=metric.device)).item():
                        if len(kept) < need * g:
                            kept += entries
                        else:
                            surplus += 1
                    elif len(fill) < need * g:
                        fill += entries
                shortfall = torch.tensor([need - len(kept) // g], device=self.accelerator.device)
                worst = int(self.accelerator.gather(shortfall).max().item())  # a joint decision
                if worst == 0 or rounds >= ds["max_rounds"]:
                    break
                batch = self._extra_rows(max(1, math.ceil(worst * ds["oversample"])))
            informative = len(kept) // g
            if worst > 0:
                message = (f"dynamic sampling: after {rounds} generation rounds only {informative} of {need} groups on "
                           f"this process are informative (max_rounds={ds['max_rounds']}); the rest of the rollout is "
                           "filled with zero-advantage groups")
                logger.warning(message)
                if ds["on_exhausted"] == "stop":
                    self._paperrl_request_stop(message + "; stopped after this step (on_exhausted=stop): resume "
                                               "with --resume, e.g. with a larger dynamic_sampling.max_rounds")
            kept += fill[: need * g - len(kept)]
            for key, mark in marks.items():  # drop what each generation round logged: TRL logs the kept batch
                del metrics[key][mark:]
            for key in [k for k in metrics if k not in marks and k != "num_tokens"]:
                del metrics[key]
            tokens_seen = self.state.num_input_tokens_seen  # the rounds counted every token generated
            rows, kept_ids, kept_logprobs, kept_rewards = zip(*kept)
            with _Replay(self, list(kept_ids), None if logprobs is None else list(kept_logprobs),
                         torch.stack(kept_rewards)):
                result = super()._generate_and_score_completions(list(rows))
            self.state.num_input_tokens_seen = tokens_seen
            metrics["num_tokens"] = [tokens_seen]
            rewards_per_func = torch.stack(kept_rewards)
            # what this rollout trains on, for tests and debugging: local rows, one per completion
            self.last_rollout = {"rewards_per_func": rewards_per_func, "metric": self._metric_column(rewards_per_func),
                                 "rounds": rounds, "kept": informative, "need": need}
            counts = self.accelerator.gather(torch.tensor(
                [float(rounds), float(generated), float(informative), float(need), float(worst > 0), float(surplus)],
                device=self.accelerator.device)).view(-1, 6)
            for key, value in {
                "dynamic_sampling/rounds": counts[:, 0].max().item(),
                "dynamic_sampling/groups_generated": counts[:, 1].sum().item(),
                "dynamic_sampling/groups_kept": counts[:, 2].sum().item(),
                "dynamic_sampling/fraction_kept": (counts[:, 2].sum() / counts[:, 1].sum()).item(),
                "dynamic_sampling/groups_surplus": counts[:, 5].sum().item(),
                "dynamic_sampling/exhausted": counts[:, 4].max().item(),
            }.items():
                metrics[key].append(value)
            return result

    DynamicSamplingGRPOTrainer.__name__ = f"DynamicSampling{trainer_cls.__name__}"
    return DynamicSamplingGRPOTrainer
