"""paperrl verify: every recipe verifies on the installed TRL; mutations fail; references checked by hand."""

from __future__ import annotations

import json
import math
import runpy
from pathlib import Path

import pytest
import torch

from paperrl import recipe as recipes
from paperrl.verify import averaging, policy, verify
from paperrl.verify import references as v


# ---------------------------------------------------------------- the references, on examples done on paper


def test_advantages_by_hand():
    r = torch.tensor([1.0, 0.0, 2.0, 2.0])  # two groups of two: one varied, one all equal
    assert v.ref_advantages(r, 2, "none").tolist() == pytest.approx([0.5, -0.5, 0.0, 0.0])
    assert v.ref_advantages(r, 2, "group").tolist() == pytest.approx([0.70701, -0.70701, 0.0, 0.0], abs=1e-5)
    assert v.ref_advantages(r, 2, "batch").tolist() == pytest.approx([0.52218, -0.52218, 0.0, 0.0], abs=1e-5)
    assert v.ref_advantages(r, 2, "leave_one_out").tolist() == pytest.approx([1.0, -1.0, 0.0, 0.0])


LOG_RATIO = torch.tensor([[0.1, 0.0, -0.1], [0.3, 0.3, 0.0]])  # 2 completions, 3 tokens, the second has 2
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
ADV = torch.tensor([1.0, -1.0])


@pytest.mark.parametrize("ratio,aggregation,expected", [
    ("token", "token_mean", -0.0620581),  # (1.10517 + 1 + 0.90484 - 2 x 1.34986) / 5 tokens
    ("token", "sequence_mean", 0.1732613),  # mean of per-sequence means
    ("token", "constant", -0.0517151),  # sum / (2 completions x L_max 3)
    ("token", "sequence_sum", -0.1551454),  # LUSPO: mean of per-sequence sums: (3.01001 - 2 x 1.34986) / 2
    ("sequence", "sequence_mean", 0.1749294),  # s = (1, e^0.3): (1 - 1.34986) / 2
])
def test_policy_loss_by_hand(ratio, aggregation, expected):
    objective = {"ratio": ratio, "aggregation": aggregation, "clip": [0.2, 0.2]}
    loss = v.ref_policy_loss(LOG_RATIO, torch.zeros(2, 3), MASK, ADV, objective, max_len=3)
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_sapo_soft_gate_by_hand():
    # f(r) = (4/tau) sigmoid(tau (r - 1)): A = 1, tau 1 on e^0.1, 1, e^-0.1; A = -1, tau 1.05 on e^0.3, e^0.3;
    # -(mean of the first sequence's f - f(e^0.3)) / 2 = -(1.0000 - 1.2474) / 2
    objective = {"ratio": "token", "aggregation": "sequence_mean", "soft_gate": [1.0, 1.05]}
    loss = v.ref_policy_loss(LOG_RATIO, torch.zeros(2, 3), MASK, ADV, objective, max_len=3)
    assert loss.item() == pytest.approx(0.1237055, abs=1e-6)


def test_grpo_kl_penalty_by_hand():
    # the reference's log-probabilities 0: d = -log pi, beta (e^d - d - 1) per token added to the clipped loss
    objective = {"ratio": "token", "aggregation": "sequence_mean", "clip": [0.2, 0.2], "kl": 0.1}
    loss = v.ref_policy_loss(LOG_RATIO, torch.zeros(2, 3), MASK, ADV, objective, 3, ref_logps=torch.zeros(2, 3))
    assert loss.item() == pytest.approx(0.1754691, abs=1e-6)  # 0.1732613 without the KL term


def test_cispo_capped_weight_by_hand():
    # -sg(min(r, 1.2)) A log pi per token, over 5 tokens: (1.10517 x 0.1 + 0 - 0.90484 x 0.1 - 2 x 1.2 x 0.3) / 5
    objective = {"ratio": "token", "aggregation": "token_mean", "is_cap": 1.2}
    loss = v.ref_policy_loss(LOG_RATIO, torch.zeros(2, 3), MASK, ADV, objective, max_len=3)
    assert loss.item() == pytest.approx(0.1399933, abs=1e-6)


def test_clip_higher_by_hand():
    # r = e^0.22 = 1.246 with A > 0: clipped to 1.2 with epsilon_high 0.2, kept with DAPO's 0.28
    lr = torch.tensor([[0.22]])
    args = (lr, torch.zeros(1, 1), torch.ones(1, 1), torch.tensor([1.0]))
    assert v.ref_policy_loss(*args, {"ratio": "token", "aggregation": "token_mean", "clip": [0.2, 0.28]}, 1).item() \
        == pytest.approx(-math.exp(0.22))
    assert v.ref_policy_loss(*args, {"ratio": "token", "aggregation": "token_mean", "clip": [0.2, 0.2]}, 1).item() \
        == pytest.approx(-1.2)


def test_soft_overlong_by_hand():
    assert v.ref_soft_overlong([6, 7, 8, 10, 11], 10, 4).tolist() == pytest.approx([0, -0.25, -0.5, -1, -1])


def test_preference_losses_by_hand():
    t = torch.tensor
    dpo = v.ref_preference_loss(t([-1.0]), t([-2.0]), t([-1.5]), t([-1.5]), t([2.0]), t([2.0]),
                                {"loss": "sigmoid", "beta": 0.1})
    assert dpo.item() == pytest.approx(0.6443967)  # -log sigmoid(0.1 x (0.5 + 0.5))
    alphapo = v.ref_preference_loss(t([-2.0]), t([-4.0]), t([0.0]), t([0.0]), t([2.0]), t([2.0]),
                                    {"loss": "alphapo", "alpha": 0.25, "beta": 2.5, "gamma": 0.25})
    assert alphapo.item() == pytest.approx(0.0329268, rel=1e-5)


# one pair: log pi (y_w) = -2 over 2 tokens, log pi (y_l) = -4 over 5; reference -1.5 and -3: h_w = -0.5, h_l = -1
PAIR = tuple(torch.tensor([x]) for x in (-2.0, -4.0, -1.5, -3.0, 2.0, 5.0))


@pytest.mark.parametrize("p,expected", [
    ({"loss": "sigmoid_norm", "beta": 5.0}, 0.8259394),  # -log sigmoid(5 (-0.5/2 + 1/5)) = -log sigmoid(-0.25)
    ({"loss": "ipo", "beta": 0.1}, 25.5025),  # (-0.25 + 0.2 - 1/(2 x 0.1))^2 = (-5.05)^2
    ({"loss": "robust", "beta": 0.1, "epsilon": 0.1}, 0.6622096),  # (0.9 x -log s(0.05) - 0.1 x -log s(-0.05)) / 0.8
    ({"loss": "exo", "beta": 0.1, "epsilon": 1e-3}, 2.6752267),  # q = s(0.05): q log(q/0.999) + (1-q) log((1-q)/0.001)
    ({"loss": "nca", "beta": 0.01}, 1.3850553),  # -log s(-0.005) - log s(0.005)/2 - log s(0.01)/2
    ({"loss": "apo_zero", "beta": 0.1}, 0.9875182),  # 1 - s(-0.05) + s(-0.1)
    ({"loss": "apo_down", "beta": 0.1}, 0.9750052),  # s(-0.05) + 1 - s(0.05)
    ({"loss": "discopop", "beta": 0.05, "tau": 0.05}, 0.8640922),  # f = 0.025, m = s(0.5): (1-m) -log s(f) + m e^-f
    ({"loss": "simpo", "beta": 2.5, "gamma": 1.375}, 2.0176751),  # -log s(2.5 (-2/2 + 4/5) - 1.375) = -log s(-1.875)
    ({"loss": "sft"}, 1.0),  # -(-2) / 2 tokens
    ([{"loss": "sigmoid", "beta": 0.01}, {"loss": "sft", "weight": 0.005}], 0.6956503),  # -log s(0.005) + 0.005 x 1
    ({"loss": "sigmoid", "beta": 0.1, "divergence": "js_divergence"}, 0.6763317),  # h -> log 2 + log s(h)
])
def test_more_preference_losses_by_hand(p, expected):
    assert v.ref_preference_loss(*PAIR, p).item() == pytest.approx(expected, rel=1e-5)


def test_ld_dpo_and_wpo_by_hand():
    # a pair: chosen 3 tokens, rejected 2; LD-DPO counts the chosen one's third token alpha = 0.5 times
    token = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, -1.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    assert v.ref_desensitised_logps(token, mask, 0.5).tolist() == pytest.approx([-3 - 0.5 * 3, -2])
    assert v.ref_desensitised_logps(token, mask).tolist() == pytest.approx([-6, -2])  # alpha 1: plain DPO
    # WPO: one token drawn with probability 0.8 from (0.8, 0.2): w = 0.8 / (0.64 + 0.04)
    logp = torch.log(torch.tensor([[[0.8, 0.2]]]))
    assert v.ref_wpo_weights(logp[..., 0], logp, torch.ones(1, 1)).item() == pytest.approx(0.8 / 0.68)


def test_every_preference_loss_a_recipe_can_name_has_a_reference():
    from typing import get_args, get_type_hints

    from paperrl.recipe import Preference

    assert set(get_args(get_type_hints(Preference)["loss"])) == set(v.PREFERENCE_LOSSES)


def test_bema_by_hand():
    a = {"ema_power": 0.5, "bias_power": 0.2, "lag": 10, "multiplier": 1.0, "min_ema_multiplier": 0.0}
    thetas = [torch.tensor([0.0]), torch.tensor([1.0]), torch.tensor([2.0])]
    assert v.ref_bema(thetas[:2], a, 1).item() == pytest.approx(0.9205553)
    assert v.ref_bema(thetas, a, 1).item() == pytest.approx(2.0085515)


# ---------------------------------------------------------------- against the installed TRL


# the pipeline rows (paperrl/verify_pipeline.py): the batch on 1 and 8 processes, the schedule, the epochs
BATCH = ["samples per update and per rollout on 1 process", "samples per update and per rollout on 8 processes"]
OFFLINE_BATCH = ["examples per update on 1 process", "examples per update on 8 processes"]
SCHEDULE = ["learning rate at chosen steps (the optimizer and scheduler TRL's Trainer builds)", "epochs"]
PREFERENCE = ["preference loss", "gradient of the preference loss"]
ROWS = {  # what each recipe's verify checks; a verifier that returns fewer rows fails here
    "gspo": ["advantage (group)", "policy loss (ratio, clip, aggregation)",
             "gradient of the policy loss, all parameters", *BATCH, *SCHEDULE],
    "dr-grpo": ["advantage (none)", "policy loss (ratio, clip, aggregation)",
                "gradient of the policy loss, all parameters",
                "reward verifier on DigitalLearningGmbH/MATH-lighteval's answer format",
                "prompt template: the text the model is given", "data filter: the rows kept", *BATCH, *SCHEDULE],
    "dapo": ["advantage (group)", "overlong filtering: truncated completions get no loss",
             "policy loss (ratio, clip, aggregation)", "gradient of the policy loss, all parameters",
             "soft overlong punishment", "dynamic sampling: the kept groups are the informative ones, in order",
             "dynamic sampling: advantage (group) over the kept groups",
             "TRL's own dapo normaliser (without paperrl's exact_token_normaliser)",
             "reward verifier on BytedTsinghua-SIA/DAPO-Math-17k's answer format", *BATCH, *SCHEDULE],
    "lite-ppo": ["advantage (batch)", "policy loss (ratio, clip, aggregation)",
                 "gradient of the policy loss, all parameters",
                 "TRL's own dapo normaliser (without paperrl's exact_token_normaliser)", *BATCH, *SCHEDULE],
    "rloo": ["advantage: leave-one-out baseline, KL in the reward", "REINFORCE gradient, on-policy",
             "REINFORCE gradient, off-policy mini-batch (importance-weighted, unclipped)",
             "data filter: the rows kept", *BATCH, *SCHEDULE],
    "dpo": ["preference loss", "gradient of the preference loss", *OFFLINE_BATCH, *SCHEDULE],
    "alphapo": ["preference loss", "gradient of the preference loss", *OFFLINE_BATCH, *SCHEDULE],
    "bema": ["BEMA weights after 12 steps (paperrl's callback)", *OFFLINE_BATCH, *SCHEDULE],
    **{name: [*PREFERENCE, *OFFLINE_BATCH, *SCHEDULE]  # the DPO family, SimPO: a batch stated
       for name in ("robust-dpo", "exo", "nca", "discopop", "apo-zero", "apo-down", "tulu3-dpo", "simpo")},
    **{name: [*PREFERENCE, *SCHEDULE] for name in ("ipo", "rpo", "f-dpo", "cpo", "ld-dpo", "wpo")},  # no batch
    **{name: ["advantage (group)", "policy loss (ratio, clip, aggregation)",
              "gradient of the policy loss, all parameters", *BATCH, *SCHEDULE] for name in ("2-grpo", "grpo")},
    **{name: ["advantage (group)", "policy loss (ratio, clip, aggregation)",
              "gradient of the policy loss, all parameters", *SCHEDULE] for name in ("sapo", "luspo")},
    "scalerl": ["advantage (batch)", "policy loss (ratio, clip, aggregation)",
                "gradient of the policy loss, all parameters",
                "TRL's own dapo normaliser (without paperrl's exact_token_normaliser)", *BATCH, *SCHEDULE],
}


def expected_rows() -> dict:
    """ROWS above, and those of the recipes whose tests live elsewhere: each tests/rows_*.py defines a ROWS dict."""
    rows = dict(ROWS)
    for path in sorted(Path(__file__).parent.glob("rows_*.py")):
        rows.update(runpy.run_path(str(path))["ROWS"])
    return rows


def test_every_recipe_declares_its_rows():
    assert sorted(expected_rows()) == sorted(recipes.available())


def _verdicts(result) -> dict:
    report = json.loads(result.stdout)
    return {(name, c["check"]): c["status"] for name, checks in report.items() for c in checks}


@pytest.mark.slow
def test_verify_all_passes(cli):
    result = cli("verify", "--all", "--format", "json")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert {name: [c["check"] for c in checks] for name, checks in report.items()} == expected_rows()
    statuses = _verdicts(result)
    assert "FAIL" not in statuses.values()
    # TRL's own normaliser, which paperrl replaces, is reported with its size and the recipe's bound
    dev = next(c for c in report["dapo"] if c["status"] == "KNOWN DEVIATION")
    assert "normaliser" in dev["check"] and dev["relative"] <= dev["bound"] == 0.3
    # its size is set by the scenario's token counts, not by the weights: 53 and 31 tokens against 42
    assert dev["relative"] == pytest.approx(53 / 42 - 1, rel=1e-3)


# every trainer kind, dynamic sampling and a bounded deviation
REPRESENTATIVE = ["dapo", "gspo", "rloo", "dpo", "alphapo", "bema"]


def test_verdicts_do_not_depend_on_threads_or_weights(cache_dir, tmp_path, monkeypatch):
    """The same verdicts with 1 or 2 threads and on a model whose weights were perturbed: nothing is sampled.
    (CI also runs `paperrl verify --all` in a fresh process.)"""
    one, two, perturbed = _verdicts_three_ways(REPRESENTATIVE, tmp_path, monkeypatch)
    assert "FAIL" not in one.values()
    assert one == two == perturbed


@pytest.mark.slow
def test_verdicts_of_every_other_kind_do_not_depend_on_threads_or_weights(cache_dir, tmp_path, monkeypatch):
    """One recipe of each trainer kind added with the Paper Index (distillation's teacher is rebuilt from the
    perturbed student)."""
    covered = {recipes.load(name).trainer for name in REPRESENTATIVE}
    first = {}
    for name in sorted(recipes.available()):
        first.setdefault(recipes.load(name).trainer, name)
    names = [name for kind, name in sorted(first.items()) if kind not in covered]
    one, two, perturbed = _verdicts_three_ways(names, tmp_path, monkeypatch)
    assert len(names) >= 10 and "FAIL" not in one.values()
    assert one == two == perturbed


def _verdicts_three_ways(names, tmp_path, monkeypatch):
    """{(recipe, check): status} with 1 thread, with 2 threads, and on perturbed weights."""
    import shutil

    from paperrl import demo

    def verdicts():
        return {(name, c.check): c.status for name in names for c in verify(name, [])}

    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # so that paperrl leaves the thread count to this test
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = verdicts()
        torch.set_num_threads(2)
        two = verdicts()
    finally:
        torch.set_num_threads(threads)
    perturbed_cache = tmp_path / "cache"
    target = perturbed_cache / demo.model_dir().relative_to(demo.cache_dir())
    shutil.copytree(demo.model_dir(), target)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(target)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(7)
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.05)
    model.save_pretrained(target)
    monkeypatch.setenv("PAPERRL_CACHE", str(perturbed_cache))
    return one, two, verdicts()


def test_a_verifier_that_checks_nothing_fails(cache_dir, monkeypatch):
    monkeypatch.setattr(averaging, "verify_averaging", lambda name, sets: [])
    failed = [c.check for c in verify("bema", []) if c.status == "FAIL"]  # the pipeline rows still pass
    assert failed == ["the recipe's objective"]


@pytest.mark.parametrize("recipe,mutation,broken", [
    ("gspo", "importance_sampling_level=token", "policy loss"),
    ("dr-grpo", "scale_rewards=group", "advantage"),
    ("dapo", "epsilon_high=0.2", "policy loss"),
    ("dapo", "mask_truncated_completions=false", "overlong filtering"),
    ("lite-ppo", "scale_rewards=group", "advantage"),
    ("alphapo", "alpha=0", "preference loss"),
    ("ipo", "loss_type=[sigmoid]", "preference loss"),
    ("robust-dpo", "label_smoothing=0", "preference loss"),
    ("exo", "label_smoothing=0.01", "preference loss"),
    ("nca", "loss_type=[bco_pair]", "preference loss"),
    ("discopop", "discopop_tau=1.0", "preference loss"),
    ("apo-zero", "loss_type=[apo_down]", "preference loss"),
    ("apo-down", "loss_type=[apo_zero]", "preference loss"),
    ("tulu3-dpo", "loss_type=[sigmoid]", "preference loss"),
    ("rpo", "loss_weights=[1.0, 0.5]", "preference loss"),
    ("f-dpo", "f_divergence_type=reverse_kl", "preference loss"),
    ("simpo", "simpo_gamma=0.1", "preference loss"),
    ("cpo", "cpo_alpha=0", "preference loss"),
    ("ld-dpo", "ld_alpha=1.0", "preference loss"),
    ("wpo", "use_weighting=false", "preference loss"),
    ("sapo", "sapo_temperature_neg=2.0", "policy loss"),
    ("2-grpo", "batch.completions_per_prompt=4", "samples per update"),
    ("luspo", "loss_type=grpo", "policy loss"),
    ("grpo", "beta=0", "policy loss"),
    ("grpo", "use_bias_correction_kl=true", "policy loss"),
    ("scalerl", "epsilon_high=1.1", "policy loss"),
    ("dapo", "exact_token_normaliser=false", "policy loss"),
    ("dapo", "deviations.trl_token_normaliser.max_relative=0.1", "TRL's own dapo normaliser"),
    ("rloo", "epsilon=0.2", "REINFORCE gradient, off-policy"),
])
def test_mutations_fail_the_check_they_break(cache_dir, recipe, mutation, broken):
    checks = verify(recipe, [mutation])
    failed = [c.check for c in checks if c.status == "FAIL"]
    assert any(name.startswith(broken) for name in failed), failed


def test_scenario_ratios_keep_away_from_every_clip_edge():
    """A ratio on a clip edge would let float rounding pick the branch; the scenario keeps a margin."""
    mask = torch.ones(4, 8)
    offset = policy._shifts(mask, torch.tensor([1.0, -1.0, 0.0, 2.0]))
    for clip in ([0.2, 0.28], [0.2, 0.2], [3e-4, 4e-4]):
        assert policy.clip_margin(offset, mask, {"ratio": "token", "clip": clip}) >= policy.MIN_CLIP_MARGIN


def test_table_output(cli):
    result = cli("verify", "gspo")
    assert result.returncode == 0
    assert "GSPO Eq. 7" in result.stdout and "PASS" in result.stdout
