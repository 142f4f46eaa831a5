"""The paper's batch <-> TRL's batch fields, for any number of processes.

Papers count prompts per rollout (P), samples per prompt (G) and completions per gradient
update (M). TRL counts per-device completions (b), accumulation steps and steps per
generation, all in micro-batches:

    completions per optimizer step  M = b * N * gradient_accumulation_steps
    completions per rollout     P * G = b * N * steps_per_generation
    optimizer steps per rollout     K = steps_per_generation / gradient_accumulation_steps

so for N processes: gradient_accumulation_steps = M / (b N), steps_per_generation = K * that.
Nothing is rounded: a batch that cannot be split exactly is an error naming valid choices.
"""

from __future__ import annotations

from dataclasses import dataclass

from paperrl.errors import PaperrlError

DEFAULT_MICRO_BATCH = 8  # TRL's per_device_train_batch_size default


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _nearest(n: int, around: int) -> str:
    """The valid choices just below and just above `around` (divisors of n)."""
    ds = divisors(n)
    below = [d for d in ds if d <= around]
    above = [d for d in ds if d >= around]
    picks = dict.fromkeys(([below[-1]] if below else []) + ([above[0]] if above else []))
    return " or ".join(str(d) for d in picks)


@dataclass
class PaperBatch:
    prompts_per_rollout: int | None = None
    completions_per_prompt: int | None = None
    per_step: int | None = None  # completions (GRPO family) or examples per optimizer step
    steps_per_rollout: int | None = None

    def steps(self) -> int | None:
        if self.steps_per_rollout:
            return self.steps_per_rollout
        if self.prompts_per_rollout and self.completions_per_prompt and self.per_step:
            total = self.prompts_per_rollout * self.completions_per_prompt
            if total % self.per_step:
                raise PaperrlError(
                    f"batch: {self.prompts_per_rollout} prompts x {self.completions_per_prompt} completions = {total} "
                    f"per rollout is not a whole number of mini-batches of {self.per_step}"
                )
            return total // self.per_step
        return None


def derive(paper: PaperBatch, num_processes: int, fixed: dict, cap: int = DEFAULT_MICRO_BATCH) -> dict:
    """TRL fields for the paper's batch; `fixed` holds the fields the user set (kept as given).

    Without a user-set micro-batch, the largest one <= `cap` that divides the batch is used."""
    out: dict = {}
    n = num_processes
    if paper.completions_per_prompt and "num_generations" not in fixed:
        out["num_generations"] = paper.completions_per_prompt
    m = paper.per_step
    if m is None:
        return out
    if m % n:
        raise PaperrlError(
            f"--num-processes {n}: the paper's {m} per optimizer step cannot be split evenly over {n} processes; "
            f"nearest valid process counts: {_nearest(m, n)}"
        )
    per_process = m // n
    b = fixed.get("per_device_train_batch_size")
    if b is None:
        b = max(d for d in divisors(per_process) if d <= cap)
        out["per_device_train_batch_size"] = b
    elif not isinstance(b, int) or b < 1 or per_process % b:
        raise PaperrlError(
            f"per-device batch size {b}: {m} per optimizer step over {n} process(es) is {per_process} per process, "
            f"which {b} does not divide; nearest valid per-device sizes: {_nearest(per_process, b if isinstance(b, int) else 8)}"
        )
    if "gradient_accumulation_steps" not in fixed:
        out["gradient_accumulation_steps"] = per_process // b
    k = paper.steps()
    if k and "steps_per_generation" not in fixed:
        ga = fixed.get("gradient_accumulation_steps", out.get("gradient_accumulation_steps"))
        out["steps_per_generation"] = k * ga
    return out


def describe(config: dict, num_processes: int) -> dict:
    """The batch a GRPO-family TRL config actually trains with, in the paper's terms."""
    b = config["per_device_train_batch_size"]
    ga = config["gradient_accumulation_steps"]
    spg = config.get("steps_per_generation") or ga
    g = config.get("num_generations") or 1
    per_rollout = b * num_processes * spg
    return {
        "prompts_per_rollout": per_rollout // g if per_rollout % g == 0 else per_rollout / g,
        "completions_per_prompt": g,
        "completions_per_step": b * num_processes * ga,
        "steps_per_rollout": (spg // ga if spg % ga == 0 else spg / ga) * (config.get("num_iterations") or 1),
        "num_processes": num_processes,
    }
