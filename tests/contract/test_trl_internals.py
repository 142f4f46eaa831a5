"""Contract tests: every TRL internal that paperrl relies on, pinned in one place.

paperrl reads TRL's config fields from its source (trl_fields.py), reads closed value sets and the
reward functions' arguments from its code, and subclasses private methods of GRPOTrainer (DAPO's
dynamic sampling in sampling.py, the exact token normaliser in normaliser.py). None of that is a
public API: an upgrade of TRL can change it without notice. Each test names the internal and the
paperrl module that relies on it, so that an upgrade fails here, loudly, with what changed.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import warnings
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # conftest helpers, also when run alone

from paperrl.kinds import KINDS  # noqa: E402

# The private methods paperrl overrides or calls, with the parameters it passes: {internal: (params, relied on by)}.
SIGNATURES = {
    "GRPOTrainer._generate_and_score_completions": (["self", "inputs"], "paperrl/sampling.py overrides it"),
    "GRPOTrainer._calculate_rewards": (["self", "inputs", "prompts", "completions", "completion_ids_list"],
                                       "paperrl/sampling.py overrides it"),
    "GRPOTrainer._prepare_inputs": (["self", "generation_batch"], "paperrl/normaliser.py overrides it"),
    "GRPOTrainer._compute_loss": (["self", "model", "inputs"], "paperrl/verify/policy.py calls it"),
    "GRPOTrainer._generate": (["self", "prompts"], "paperrl/sampling.py calls it for each generation round"),
    "GRPOTrainer._generate_single_turn": (["self", "prompt_ids", "images", "multimodal_fields", "num_generations",
                                           "has_tool_images"],
                                          "paperrl/sampling.py replays the kept completions through it; verify.py "
                                          "hands its written completions through it"),
    "RLOOTrainer._generate_single_turn": (["self", "prompt_ids", "images", "multimodal_fields"],
                                          "paperrl/verify/policy.py hands its written completions through it"),
}
# What sampling.py reads from the output of _generate_and_score_completions.
GENERATION_KEYS = {"prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "advantages", "num_items_in_batch"}
# Trainer attributes sampling.py and normaliser.py read or edit.
ATTRIBUTES = ("num_generations", "reward_weights", "reward_func_names", "scale_rewards", "loss_type", "_tokenizer",
              "_metrics", "_buffered_inputs", "_step", "num_iterations", "accelerator", "train_dataset")
# Metrics sampling.py replaces with the kept batch's.
METRICS = ("reward", "reward_std", "frac_reward_zero_std", "completions/mean_length", "num_tokens")


def _real_fields(cls) -> dict:
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
        else:
            out[f.name] = None
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_trl_fields_read_from_source_equal_dataclasses_fields(kind):
    """trl_fields.py parses TRL's config classes (names and defaults) to keep `paperrl show` instant."""
    from paperrl.trl_fields import config_fields

    k = KINDS[kind]
    real, ours = _real_fields(k.load("config_class")), config_fields(k.config_class)
    assert list(ours) == list(real) or set(ours) == set(real), \
        f"{k.config_class}: fields read from source differ: missing {set(real) - set(ours)}, extra {set(ours) - set(real)}"
    wrong = {n: (ours[n][0], real[n]) for n in real if ours[n][0] != real[n] and not callable(real[n])}
    assert not wrong, f"{k.config_class}: defaults read from source differ (ours, dataclasses.fields): {wrong}"


@pytest.mark.parametrize("kind", [k for k in KINDS if KINDS[k].closed])
def test_closed_sets_read_from_trl_hold_every_shipped_value(kind):
    """paperrl.kinds reads each closed set (loss_type, ...) from the strings TRL's code compares it with."""
    from paperrl import recipe as recipes

    k = KINDS[kind]
    for field, values in k.closed_sets.items():
        assert values, f"{k.trainer_class}: no value of {field} found in TRL's code; trl_fields.compared_values needs a look"
        default = recipes.config_fields(k.config_class)[field][0]
        assert default in values or isinstance(default, list), f"{field}: TRL's default {default!r} not in {values}"
    for name in recipes.available():
        r = recipes.load(name)
        for field, entry in r.config.items():
            if r.trainer == kind and field in k.closed_sets and entry.value is not None:
                values = entry.value if isinstance(entry.value, list) else [entry.value]  # DPO: a list of losses
                assert set(values) <= set(k.closed_sets[field]), \
                    f"{name}: {field}={entry.value!r} not in TRL's {k.closed_sets[field]}"


@pytest.mark.parametrize("internal", SIGNATURES)
def test_private_method_signatures(internal):
    import trl

    params, who = SIGNATURES[internal]
    cls, name = internal.split(".")
    method = getattr(getattr(trl, cls), name, None)
    assert method is not None, f"TRL removed {internal} ({who})"
    got = list(inspect.signature(method).parameters)
    assert got == params, f"TRL changed {internal}: parameters {got}, expected {params} ({who})"


# ---------------------------------------------------------------- a real GRPOTrainer on the embedded model


@pytest.fixture(scope="module")
def grpo(cache_dir, tmp_path_factory):
    """A real GRPOTrainer, built by paperrl: dapo loss, 4 prompts x 4 completions per rollout, micro-batches of 4,
    2 accumulation steps, 4 micro-batches per generation; two reward functions (the demo's and a spy)."""
    from paperrl import recipe as recipes
    from paperrl import builder
    from paperrl.resolve import Options, resolve

    sets = ["loss_type=dapo", "batch.prompts_per_rollout=4", "batch.completions_per_prompt=4",
            "batch.completions_per_step=8", "max_completion_length=4", "temperature=2.0"]
    plan = resolve(recipes.load("dr-grpo", sets),
                   Options(per_device_batch_size=4, output_dir=str(tmp_path_factory.mktemp("grpo") / "run"),
                           rewards=["tests.rewards_for_tests:length_reward"]))
    dataset, funcs = builder.load_inputs(plan)
    received = []

    def spy(**kwargs):
        received.append(kwargs)
        return [0.0] * len(kwargs["completions"])

    spy.__name__ = "spy"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = builder.build_trainer(plan, dataset, [funcs[0], spy])
    trainer.model.train()
    torch.manual_seed(0)
    batch = next(iter(trainer.get_train_dataloader()))
    return trainer, batch, received


def test_trainer_attributes_paperrl_reads(grpo):
    trainer, _, _ = grpo
    missing = [a for a in ATTRIBUTES if not hasattr(trainer, a)]
    assert not missing, f"TRL's GRPOTrainer no longer has {missing} (read by paperrl/sampling.py, paperrl/normaliser.py)"
    assert trainer.args.gradient_accumulation_steps == 2 and trainer.args.steps_per_generation == 4


def test_generation_output_keys_and_shapes(grpo):
    """sampling.py selects, concatenates and pads the output of _generate_and_score_completions by row."""
    trainer, batch, _ = grpo
    out = trainer._generate_and_score_completions(batch)
    n = len(batch)
    assert GENERATION_KEYS <= set(out), f"TRL's generation output lost {GENERATION_KEYS - set(out)} (paperrl/sampling.py)"
    for key, value in out.items():
        if torch.is_tensor(value) and value.dim() > 0:
            assert value.shape[0] == n, f"generation output '{key}' has {value.shape[0]} rows, not one per completion"
    assert out["num_items_in_batch"].dim() == 0 and out["num_items_in_batch"] == out["completion_mask"].sum()
    assert out["prompt_ids"].shape == out["prompt_mask"].shape and out["completion_ids"].shape == out["completion_mask"].shape
    assert out["advantages"].shape == (n,)
    metrics = trainer._metrics["train"]
    assert isinstance(metrics, dict) and all(isinstance(v, list) for v in metrics.values())
    missing = [m for m in (*METRICS, "rewards/spy/mean") if m not in metrics]
    assert not missing, f"TRL no longer logs {missing} during generation (paperrl/sampling.py rewrites them)"


def test_generate_returns_what_dynamic_sampling_reads(grpo):
    """sampling.py takes completion ids, decoded completions and sampling log-probabilities from _generate by
    position, and its replay returns (ids, log-probabilities) from _generate_single_turn."""
    trainer, batch, _ = grpo
    prompts = [row["prompt"] for row in batch]
    out = trainer._generate(prompts)
    assert isinstance(out, tuple) and len(out) == 8, "TRL's _generate no longer returns 8 values (paperrl/sampling.py)"
    ids, completions, logprobs = out[1], out[3], out[4]
    assert len(ids) == len(completions) == len(prompts) and all(isinstance(i, list) for i in ids)
    assert logprobs is None or len(logprobs) == len(prompts)
    prompt_ids = trainer._tokenize_prompts(prompts)[0]
    single = trainer._generate_single_turn(prompt_ids, None, {}, trainer.num_generations)
    assert isinstance(single, tuple) and len(single) == 2, "_generate_single_turn no longer returns (ids, logprobs)"


def test_calculate_rewards_passes_what_trl_fields_read(grpo):
    """rewards.py tells dataset columns from TRL's own arguments with trl_fields.reward_arguments."""
    from paperrl.trl_fields import reward_arguments

    trainer, batch, received = grpo
    received.clear()
    prompts = [row["prompt"] for row in batch]
    rewards = trainer._calculate_rewards(batch, prompts, ["1"] * len(batch), [[1]] * len(batch))
    assert rewards.shape == (len(batch), 2), "TRL's _calculate_rewards no longer returns (completions, functions)"
    columns = set(batch[0]) - {"prompt"}
    trl_args = set(reward_arguments("trl.trainer.grpo_trainer:GRPOTrainer"))
    got = set(received[0])
    assert got - columns <= trl_args, f"TRL passes reward functions {got - columns - trl_args}, which " \
                                      "trl_fields.reward_arguments did not read (paperrl/rewards.py)"
    assert {"prompts", "completions", "completion_ids"} <= got


def test_prepare_inputs_buffers_one_generation_per_steps_per_generation(grpo):
    """normaliser.py recomputes each slice's num_items_in_batch right after TRL fills `_buffered_inputs`."""
    trainer, batch, _ = grpo
    spg = trainer.args.steps_per_generation
    trainer._step, trainer._buffered_inputs = 0, None
    first = trainer._prepare_inputs(batch)
    buffered = trainer._buffered_inputs
    assert isinstance(buffered, list) and len(buffered) == spg, \
        f"TRL's _prepare_inputs buffers {type(buffered).__name__} of {len(buffered)}, not {spg} slices"
    assert first is buffered[0] and all({"completion_mask", "num_items_in_batch"} <= set(s) for s in buffered)
    for step in range(1, spg):  # TRL advances `_step` in training_step; the buffer is reused until the next rollout
        trainer._step = step
        assert trainer._prepare_inputs(batch) is buffered[step]
    trainer._step = spg
    trainer._prepare_inputs(batch)
    assert trainer._buffered_inputs is not buffered, "TRL no longer regenerates every steps_per_generation steps"


def test_dapo_normaliser_formula(grpo):
    """TRL's dapo loss divides by num_items_in_batch / processes x accumulation / steps_per_generation; normaliser.py
    sets num_items_in_batch = tokens x steps_per_generation / accumulation so that TRL divides by `tokens`."""
    trainer, batch, _ = grpo
    trainer._step, trainer._buffered_inputs = 0, None
    inputs = dict(trainer._prepare_inputs(batch))
    ga, spg = trainer.args.gradient_accumulation_steps, trainer.args.steps_per_generation
    trainer.current_gradient_accumulation_steps = ga
    tokens = inputs["completion_mask"].sum()
    inputs["num_items_in_batch"] = tokens * spg / ga
    with torch.no_grad():
        dapo = trainer._compute_loss(trainer.model, inputs)
        trainer.loss_type = "bnpo"  # sum over tokens / the micro-batch's tokens / accumulation
        try:
            bnpo = trainer._compute_loss(trainer.model, inputs)
        finally:
            trainer.loss_type = "dapo"
    assert torch.allclose(dapo, bnpo * ga, rtol=1e-5, atol=1e-7), \
        f"TRL's dapo normaliser changed: {dapo.item()} vs {bnpo.item() * ga} (paperrl/normaliser.py re-derives it)"
