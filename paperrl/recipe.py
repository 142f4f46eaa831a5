"""Recipe files: the pydantic schema, discovery, `--set` overrides and validation.

A recipe states what a paper states, in the paper's terms, each value with its source. Every
sourced value is a `Sourced` leaf: `{value, source, demo}`, where `demo` replaces `value` for
the embedded tiny model and `value` may be left out to document that TRL's default is kept.
This module never imports TRL: field names and defaults come from `trl_fields`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Generic, Literal, TypeVar

from typing_extensions import TypedDict

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from paperrl.catalog import RECIPE_DIR, available, locate, read_raw, shipped  # noqa: F401 (re-exported)
from paperrl.errors import PaperrlError, Problems, closest
from paperrl.kinds import KINDS
from paperrl.trl_fields import config_fields, parameters, type_problem

# Callbacks a recipe can name: name -> class, imported only when a run builds it.
CALLBACKS = {"bema": "paperrl.callbacks:BEMA", "vllm_only": "paperrl.mismatch:VLLMOnly"}



class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


T = TypeVar("T")


class Sourced(_Strict, Generic[T]):
    """A value with its source; `Sourced[X]` checks `value` and `demo` against X when the file is read."""

    value: T | None = None
    source: str
    demo: T | None = None
    # where `value` comes from: the paper's text, the authors' released code or configs, TRL's Paper
    # Index (not confirmed in the paper), another implementation such as verl, or paperrl's own choice
    origin: Literal["paper", "authors", "trl-index", "peer", "paperrl"] = "paper"
    authors: Any = None  # the authors' code's value, where it differs from the paper's (shown beside it)

    def pick(self, demo_mode: bool):
        """(value, origin|'demo'|'trl-default') for this mode."""
        if demo_mode and "demo" in self.model_fields_set:
            return self.demo, "demo"
        if "value" in self.model_fields_set:
            return self.value, self.origin
        return None, "trl-default"


class Rule(_Strict):
    """`field` = `equals`, where `equals` is '<integer> * <other field>'."""

    field: str
    equals: str = Field(pattern=r"^\s*\d+\s*\*\s*[a-z_]+\s*$")
    source: str

    @property
    def factor(self) -> int:
        return int(self.equals.split("*")[0])

    @property
    def depends_on(self) -> str:
        return self.equals.split("*")[1].strip()

    def text(self) -> str:
        return f"{self.field} = {self.factor} × {self.depends_on} ({self.source})"


class Named(_Strict):
    """A reward function or callback: a registered name or `module:function`, with arguments."""

    name: str
    args: dict[str, Sourced] = {}
    weight: float = 1.0
    source: str = ""


Count = Annotated[int, Field(strict=True, ge=1, le=10**7)]  # a number of prompts, completions, steps


class Batch(_Strict):
    """The paper's batch in its own terms; TRL's fields are derived from it (see batch.py)."""

    prompts_per_rollout: Sourced[Count] | None = None
    completions_per_prompt: Sourced[Count] | None = None
    completions_per_step: Sourced[Count] | None = None
    steps_per_rollout: Sourced[Count] | None = None
    examples_per_step: Sourced[Count] | None = None  # preference pairs / sequences per optimizer step


class DynamicSampling(_Strict):
    enabled: Sourced[Annotated[bool, Field(strict=True)]]
    metric: Sourced[str]  # "reward" (the weighted total) or the name of one reward function
    # prompts generated per round, as a multiple of the prompts still needed
    oversample: Sourced[Annotated[float, Field(ge=1, le=64)]]
    max_rounds: Sourced[Annotated[int, Field(strict=True, ge=1, le=10**4)]]  # rounds per rollout before `on_exhausted`
    on_exhausted: Sourced[Literal["train", "stop"]]  # "train" on what was kept (and warn) or "stop" cleanly


class _Closed(TypedDict):
    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]


class Preference(_Closed, total=False):
    """One preference loss of `verify.PREFERENCE_LOSSES` with the paper's constants; a list of them is a weighted sum."""

    loss: Literal["sigmoid", "sigmoid_norm", "ipo", "robust", "exo", "nca", "apo_zero", "apo_down", "discopop",
                  "simpo", "alphapo", "sft", "slic", "hinge", "bco_pair", "aot", "aot_unpaired", "sppo_hard", "nll_seq"]
    beta: float
    alpha: float  # AlphaPO's reward shape
    gamma: float  # target reward margin (SimPO, AlphaPO)
    epsilon: float  # label-flip rate (Robust DPO), target smoothing (EXO)
    tau: float  # DiscoPOP's mixing temperature
    divergence: Literal["reverse_kl", "js_divergence"]  # f-DPO's f
    ld_alpha: float  # LD-DPO: weight of the longer response's tokens beyond the shorter one's length
    weighting: bool  # WPO: each pair weighted by w(y_w) w(y_l)
    weight: float  # in a weighted sum of losses
    reward_shift: bool  # BCO: the running-mean reward shift delta (the paper's; default true), false: delta = 0


class ReferenceUpdate(_Closed):
    """TR-DPO's soft update of the reference model: every `every` optimizer steps, on the parameters."""

    alpha: float
    every: int


class Averaging(_Closed):
    ema_power: float
    bias_power: float
    lag: float
    multiplier: float
    min_ema_multiplier: float


class EntropyControl(_Closed):
    """Skywork-OR1's adaptive entropy coefficient: c_0, the target entropy, the step Delta and c's bounds."""

    initial: float
    target: float
    delta: float
    min: float
    max: float


class CosineReward(_Closed):
    """Demystifying Long CoT's cosine length-scaling reward: L_max, [r_0, r_L] when correct and when wrong, r_e."""

    l_max: int
    correct: tuple[float, float]
    wrong: tuple[float, float]
    exceed: float | None


class Kto(_Closed):
    """KTO's constants (Eq. 7-8): beta, the weights lambda_D / lambda_U of desirable and undesirable examples."""

    beta: float
    lambda_d: float
    lambda_u: float


class RewardModel(_Closed, total=False):
    """A Bradley-Terry reward model: Llama 2's rating margins m(r) (Table 27: rating -> margin), the centring eta."""

    margins: dict[str, float]  # rating -> m(r); absent: no margin (Eq. 1)
    center: float  # eta of eta (r+ + r-)^2 (Helping or Herding); absent: no centring term


class Orpo(_Closed):
    lam: float  # ORPO's lambda: weight of the odds-ratio term beside the SFT term (Eq. 6)


class Tpo(_Closed, total=False):
    beta: float
    alpha: float  # weight of the gold response's NLL
    gamma: float  # TPO-L's target reward margin on length-normalised log-likelihoods; absent: TPO


class OnlinePreference(_Closed):
    loss: Literal["sigmoid", "ipo"]  # the DAP loss applied to the annotator-ordered pair (OAIF Algorithm 1)
    beta: float


class MismatchCorrection(_Closed, total=False):
    """The rollout/training mismatch weight k = pi_train(theta_old) / pi_infer(theta_old) on each token's loss (TIS,
    IcePop, sequence-level IS): per token or one product per sequence, truncated to or masked outside [c_min, c_max]."""

    level: Literal["token", "sequence"]
    how: Literal["truncate", "mask"]
    c_min: float
    c_max: float


class Divergence(_Closed, total=False):
    """A per-token divergence between the student's and a teacher's next-token distributions (distillation kinds)."""

    kind: Literal["reverse_kl", "forward_kl", "generalized_jsd"]  # KL(S||T), KL(T||S), or the mixture below
    beta: float  # generalized JSD (GKD Eq. 1): M = beta T + (1 - beta) S, beta KL(T||M) + (1 - beta) KL(S||M)
    topk: int  # SDPO/SDFT: the student's top-k tokens only (0 or absent: the whole vocabulary)
    tail: bool  # with topk: one more bucket for the mass outside the k (else the k are renormalised)


class SelfTeacher(_Closed):
    """SDPO's self-teacher: a completion is distilled when a sibling of its group reached the reward threshold."""

    threshold: float
    exclude_self: bool  # a successful completion needs another successful sibling (dont_reprompt_on_self_success)


class Packing(_Closed):
    """How documents are packed into training windows (SFT)."""

    split_long: bool  # documents longer than the window are cut into window-sized chunks, none dropped
    isolate: bool  # a packed document attends only to itself
    best_fit: bool  # windows filled by best-fit decreasing (Fewer Truncations)


class Objective(_Strict):
    """The paper's objective, stated independently of TRL's settings: what `paperrl verify` checks TRL against."""

    advantage: Sourced[Literal["group", "batch", "none", "leave_one_out", "gdpo", "global"]] | None = None  # gdpo: per-reward
    # global: REINFORCE++ w/ baseline, r - group mean, then normalised over the whole batch
    ratio: Sourced[Literal["token", "sequence", "sequence_product", "none"]] | None = None  # none: REINFORCE
    clip: Sourced[tuple[float, float]] | None = None  # [epsilon_low, epsilon_high]
    soft_gate: Sourced[tuple[float, float]] | None = None  # SAPO's gate temperatures [tau_pos, tau_neg], no clip
    is_cap: Sourced[float] | None = None  # CISPO: REINFORCE weighted by sg(min(ratio, is_cap)), no clip
    aggregation: Sourced[Literal["sequence_mean", "sequence_sum", "token_mean", "constant"]] | None = None
    kl_in_reward: Sourced[float] | None = None  # beta of a sequence-level KL subtracted from the reward
    kl: Sourced[float] | None = None  # beta of GRPO's per-token KL penalty in the loss (DeepSeekMath Eq. 4)
    overlong_filtering: Sourced[bool] | None = None  # truncated completions get no loss
    overlong_reward: Sourced[tuple[int, int]] | None = None  # [L_max, L_cache] of the soft overlong punishment
    preference: Sourced[Preference | list[Preference]] | None = None  # {loss: sigmoid, beta}, ...
    averaging: Sourced[Averaging] | None = None
    ratio_cap: Sourced[float] | None = None  # INTELLECT-2's delta: the unclipped ratio capped at delta (two-sided clip)
    entropy_mask: Sourced[float] | None = None  # 80/20's rho: only the top-rho highest-entropy tokens get a gradient
    entropy_control: Sourced[EntropyControl] | None = None  # Skywork-OR1's adaptive entropy bonus coefficient
    kl_weighting: Sourced[Literal["none", "ratio"]] | None = None  # ratio: V3.2's unbiased KL, k3 x pi/pi_old
    off_policy_mask: Sourced[float] | None = None  # V3.2's delta: A < 0 sequences with mean log(pi_old/pi) > delta
    vespo: Sourced[tuple[float, float, float, float]] | None = None  # VESPO's [k_pos, lambda_pos, k_neg, lambda_neg]
    cosine_reward: Sourced[CosineReward] | None = None  # Demystifying's cosine length-scaling reward
    reference_update: Sourced[ReferenceUpdate] | None = None  # TR-DPO: pi_ref <- a pi + (1 - a) pi_ref every n steps
    mismatch_correction: Sourced[MismatchCorrection] | None = None  # TIS / IcePop / sequence-level IS weight (vLLM)
    geometric_mean: Sourced[tuple[float, float]] | None = None  # GMPO: log-space clip [lo, hi], geometric mean of ratios
    optimal_value: Sourced[float] | None = None  # A*-PO Stage 1: beta1 of V* = beta1 log E_ref[exp(r / beta1)]
    advantage_regression: Sourced[float] | None = None  # A*-PO Stage 2: beta2 of (beta2 log pi/pi_ref - (r - V*))^2
    kto: Sourced[Kto] | None = None  # KTO: prospect-theoretic loss on unpaired, labelled completions
    reward_model: Sourced[RewardModel] | None = None  # reward modelling: Bradley-Terry, rating margins, centring
    orpo: Sourced[Orpo] | None = None  # ORPO: SFT + lambda x odds-ratio term, no reference model
    tpo: Sourced[Tpo] | None = None  # TPO / TPO-L: reference-free preference term + alpha x NLL of a gold response
    online_preference: Sourced[OnlinePreference] | None = None  # Online DPO: DAP loss on reward-ordered on-policy pairs
    divergence: Sourced[Divergence] | None = None  # distillation kinds: the per-token divergence to the teacher
    iw_opd: Sourced[float] | None = None  # IW-OPD's gamma: advantage weight 1 + gamma (1 - prefix |A| share)
    self_teacher: Sourced[SelfTeacher] | None = None  # SDPO: which completions get a self-teacher
    loss_skip: Sourced[int] | None = None  # SDFT: the first n completion tokens are left out of the loss
    token_weighting: Sourced[Literal["dft"]] | None = None  # DFT: each token's NLL times sg(pi(token))
    packing: Sourced[Packing] | None = None  # SFT packing (Fewer Truncations' best-fit, T5)


class Deviation(_Strict):
    """A difference between TRL and the paper that paperrl knowingly tolerates: `paperrl verify` reports its
    size as measured and fails it above `max_relative` (of the paper's value)."""

    max_relative: float = Field(gt=0)
    source: str  # why it is tolerated


class Dataset(_Strict):
    name: str
    subset: str | None = None
    split: str = "train"
    columns: dict[str, str] = {}  # paperrl name <- dataset column (dots reach into nested columns)
    where: dict[str, list] = {}  # keep rows whose column value is in the list
    max_prompt_tokens: int | None = None  # drop longer prompts (TRL has no prompt cap any more)
    prompt_until: str | None = None  # no prompt column: the prompt is `chosen` up to its last such marker
    source: str


class Demo(_Strict):
    note: str
    rewards: list[Named] | None = None


class Recipe(_Strict):
    name: str
    title: str
    arxiv: str  # "" for an entry without a paper (a blog post): then `url`
    trainer: str  # a trainer kind: a module of paperrl/kinds/ (load() checks it)
    summary: str
    url: str | None = None  # the post, for an entry without an arXiv paper
    year: int | None = None  # publication year where the arXiv id does not give it
    partial: str | None = None  # what of the paper's method this recipe does not cover (`paperrl list` says partial)
    fixes: list[str] = []  # what paperrl fixes relative to TRL's Paper Index
    dataset: Dataset | None = None
    config: dict[str, Sourced] = {}
    batch: Batch = Batch()
    rules: list[Rule] = []
    rewards: list[Named] = []
    callbacks: list[Named] = []
    dynamic_sampling: DynamicSampling | None = None
    exact_token_normaliser: Sourced | None = None  # divide by the mini-batch's own token count
    reference_free: Sourced[Annotated[bool, Field(strict=True)]] | None = None  # dpo kind: log pi_ref = 0 (SLiC)
    chat_template: Sourced | None = None  # false: raw-text prompts even where the model has a chat template
    prompt_template: Sourced | None = None  # raw text around each prompt, "{prompt}" marks where it goes
    objective: Objective = Objective()
    deviations: dict[str, Deviation] = {}  # by the verify row's key, e.g. trl_token_normaliser
    demo: Demo
    # paths set from the command line ("config.beta", "dynamic_sampling.max_rounds"); not in files
    user_set: set[str] = Field(default_factory=set, exclude=True)
    file: str = Field(default="", exclude=True)

    @property
    def kind(self):
        return KINDS[self.trainer]

    def trl_fields(self) -> dict[str, tuple[object, str]]:
        return config_fields(self.kind.config_class)


# ---------------------------------------------------------------- --set


def parse_set(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise PaperrlError(f"--set {item}: expected NAME=VALUE")
    name, text = item.split("=", 1)
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    if isinstance(value, (dict, list)) and not text.strip().startswith(("[", "{")):
        value = text
    if isinstance(value, str):  # PyYAML reads 1e-3 as a string (YAML 1.1 wants 1.0e-3)
        try:
            value = float(value) if re.fullmatch(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+", value.strip()) else value
        except ValueError:
            pass
    return name.strip(), value


def _settable_paths(raw: dict, trl_fields) -> list[str]:
    paths = list(trl_fields) + ["exact_token_normaliser", "chat_template", "prompt_template", "reference_free"]
    for section in ("batch", "dynamic_sampling"):
        model = Batch if section == "batch" else DynamicSampling
        paths += [f"{section}.{f}" for f in model.model_fields]
    paths += [f"deviations.{d}.max_relative" for d in raw.get("deviations") or {}]
    for section in ("rewards", "callbacks"):
        for item in raw.get(section) or []:
            if isinstance(item, dict):
                paths.append(f"{section}.{item.get('name')}.weight")
                paths += [f"{section}.{item.get('name')}.{a}" for a in (item.get("args") or {})]
    return paths


def _set_leaf(container: dict, key: str, value) -> None:
    leaf = container.get(key)
    if isinstance(leaf, dict) and "source" in leaf:
        leaf = {**leaf, "value": value}
        leaf.pop("demo", None)  # the user's value holds in both modes
    else:
        leaf = {"value": value, "source": "--set"}
    container[key] = leaf


def apply_sets(raw: dict, sets: list[tuple[str, Any]], trl_fields) -> set[str]:
    """Write `--set` values into the raw recipe; returns the recipe paths the user set."""
    problems, user = Problems(), set()
    for name, value in sets:
        head, _, rest = name.partition(".")
        if not rest and name in trl_fields:
            raw.setdefault("config", {})
            _set_leaf(raw["config"], name, value)
            user.add(f"config.{name}")
        elif head == "config" and rest in trl_fields:
            raw.setdefault("config", {})
            _set_leaf(raw["config"], rest, value)
            user.add(name)
        elif head in ("batch", "dynamic_sampling") and rest in (Batch if head == "batch" else DynamicSampling).model_fields:
            section = raw.get(head) or {}
            if head == "dynamic_sampling" and not raw.get(head):
                section = _dynamic_sampling_defaults()
            raw[head] = section
            _set_leaf(section, rest, value)
            user.add(name)
        elif head == "deviations" and rest.removesuffix(".max_relative") in (raw.get(head) or {}):
            raw[head][rest.removesuffix(".max_relative")]["max_relative"] = value
            user.add(name)
        elif name in ("exact_token_normaliser", "chat_template", "prompt_template", "reference_free"):
            _set_leaf(raw, name, value)
            user.add(name)
        elif head in ("rewards", "callbacks") and "." in rest:
            item_name, _, arg = rest.partition(".")
            item = next((i for i in raw.get(head) or [] if isinstance(i, dict) and i.get("name") == item_name), None)
            if item is None or (arg != "weight" and arg not in (item.get("args") or {})):
                problems.add(f"--set {name}: unknown name{closest(name, _settable_paths(raw, trl_fields))}")
                continue
            if arg == "weight":
                item["weight"] = value
            else:
                _set_leaf(item["args"], arg, value)
            user.add(name)
        else:
            problems.add(
                f"--set {name}: unknown name{closest(name, _settable_paths(raw, trl_fields))}; accepted: a "
                f"{KINDS[raw.get('trainer', 'grpo')].config_class.split(':')[1]} field or a recipe path such as "
                "dynamic_sampling.max_rounds, batch.completions_per_step, rewards.<name>.<arg>"
            )
    problems.raise_if_any()
    return user


def _dynamic_sampling_defaults() -> dict:
    """Off unless a recipe turns it on; the values are DAPO's (verl's filter_groups defaults)."""
    src = "DAPO §3.2; verl recipe/dapo filter_groups"
    return {
        "enabled": {"value": False, "source": src},
        "metric": {"value": "reward", "source": src},
        "oversample": {"value": 1.0, "source": "paperrl: the prompts still missing, once", "origin": "paperrl"},
        "max_rounds": {"value": 10, "source": "verl algorithm.filter_groups.max_num_gen_batches", "origin": "peer"},
        "on_exhausted": {"value": "train", "source": "paperrl: train on the kept groups and warn", "origin": "paperrl"},
    }


# ---------------------------------------------------------------- validation


def _label(where: str, path: str, user: set) -> str:
    """'--set PATH' for what the user set on the command line, else 'FILE: PATH'."""
    leaf = re.sub(r"\.(value|demo)$", "", path)
    return f"--set {leaf}" if leaf in user or leaf.replace("config.", "", 1) in user else f"{where}: {path}"


def _pydantic_problems(where: str, exc: ValidationError, user: set) -> list[str]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("function-", "union", "literal")))
        msg, given = err["msg"], err.get("input")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] == "string_pattern_mismatch":
            msg = "expected '<integer> * <field>'"
        elif err["type"] == "literal_error":
            accepted = re.findall(r"'([^']*)'", str((err.get("ctx") or {}).get("expected", "")))
            msg = f"{msg}, got {given!r}{closest(given, accepted)}"
        elif not isinstance(given, (dict, list)):
            bound = {k: v for k, v in (err.get("ctx") or {}).items() if k in ("ge", "le")}
            msg = " and ".join(f"expected a value {'>=' if k == 'ge' else '<='} {v}" for k, v in bound.items()) or msg
            msg = f"{msg}, got {given!r}"
        out.append(f"{_label(where, loc, user)}: {msg}")
    return list(dict.fromkeys(out))


def _argument_problems(raw: dict, where: str, user: set) -> list[str]:
    """Every reward and callback argument bound to its function's signature, with its type where the
    function states one (as torchtune's config validation does): a typo fails here, not mid-run."""
    from paperrl.rewards import BUILTIN

    rewards = {name: f"paperrl.rewards:{name}" for name in BUILTIN}
    demo = raw.get("demo") if isinstance(raw.get("demo"), dict) else {}
    problems = []
    for section, items in (("rewards", raw.get("rewards")), ("demo.rewards", demo.get("rewards")),
                           ("callbacks", raw.get("callbacks"))):
        registry = CALLBACKS if section == "callbacks" else rewards
        for item in items if isinstance(items, list) else []:
            name = item.get("name") if isinstance(item, dict) else None
            args = (item.get("args") if isinstance(item, dict) else None) or {}
            if not isinstance(name, str) or not isinstance(args, dict) or ":" in name:
                continue  # pydantic reports the shape; a user's module:function is bound when the run loads it
            if name not in registry:
                problems.append(f"{where}: {section}: '{name}' is unknown{closest(name, registry)}; accepted: "
                                f"{', '.join(registry)}" + ("" if registry is CALLBACKS else
                                                            ", model:<reward model>, module:function"))
                continue
            params, any_keyword = parameters(registry[name])
            for arg, entry in args.items():
                label = f"--set {section}.{name}.{arg}" if f"{section}.{name}.{arg}" in user else \
                    f"{where}: {section}.{name}.args.{arg}"
                if arg not in params and not any_keyword:
                    problems.append(f"{label}: not an argument of {name}{closest(arg, params)}; accepted: "
                                    f"{', '.join(params) or 'none'}")
                    continue
                for which in ("value", "demo"):
                    value = entry.get(which) if isinstance(entry, dict) else None
                    problem = None if value is None or arg not in params or str(value).startswith("${") \
                        else type_problem(params[arg][1] or "", value)
                    if problem:
                        problems.append(f"{label}{'' if which == 'value' else ' (demo)'}: {problem}")
            missing = [p for p, (required, _) in params.items() if required and p not in args]
            if missing:
                problems.append(f"{where}: {section}.{name}: missing argument(s) {', '.join(missing)}")
    return problems


# Counts and sizes among TRL's int fields (batch sizes, steps, lengths): negative is never meant.
_COUNT = re.compile(r"(^num_|_size$|_steps$|_length$|_iterations$|_generation$|_tokens$|_workers$|_limit$|^max_|^top_k$)")


def _range_problem(name: str, annotation: str, default, value) -> str | None:
    if not _COUNT.search(name) or not annotation.startswith(("int", "float")) or isinstance(value, bool) \
            or not isinstance(value, (int, float)) or value == default:
        return None
    minimum = 0 if default == 0 or annotation.startswith("float") else 1
    if value >= minimum:
        return None
    what = "an integer" if annotation.startswith("int") else "a number"
    return f"expected {what} >= {minimum} (a count or size), got {value!r}"


def _config_problems(config: dict, kind, where: str, user_fields: set) -> list[str]:
    """TRL field names, types and closed sets of a recipe's `config` section (raw or validated)."""
    problems = []
    fields = config_fields(kind.config_class)
    cls = kind.config_class.split(":")[1]
    for name, entry in config.items():
        label = f"--set {name}" if name in user_fields else f"{where}: config.{name}"
        if name not in fields:
            problems.append(f"{label}: not a field of TRL's {cls}{closest(name, fields)}")
            continue
        if not isinstance(entry, dict):
            continue  # pydantic reports the shape
        for which in ("value", "demo"):
            if which not in entry:
                continue
            value = entry[which]
            problem = type_problem(fields[name][1], value) or _range_problem(name, fields[name][1], fields[name][0], value)
            allowed = kind.closed_sets.get(name)
            values = value if isinstance(value, list) else [value]
            if problem is None and allowed and any(v not in allowed for v in values):
                bad = next(v for v in values if v not in allowed)
                problem = f"{bad!r} is not accepted{closest(bad, [a for a in allowed if isinstance(a, str)])}; " \
                          f"accepted: {', '.join(str(a) for a in allowed)}"
            if problem:
                problems.append(f"{label}{'' if which == 'value' else ' (demo)'}: {problem}")
    return problems


def check(recipe: Recipe, where: str) -> list[str]:
    """Semantic checks of a valid schema: rule fields, sections that need a GRPO-family trainer."""
    fields = recipe.trl_fields()
    problems = []
    for rule in recipe.rules:
        for name in (rule.field, rule.depends_on):
            if name not in fields:
                problems.append(f"{where}: rules: '{name}' is not a field of TRL's "
                                f"{recipe.kind.config_class.split(':')[1]}{closest(name, fields)}")
    ds = recipe.dynamic_sampling
    if ds is not None and ds.enabled.value and recipe.trainer != "grpo":
        problems.append(f"{_label(where, 'dynamic_sampling.enabled', recipe.user_set)}: dynamic sampling needs a "
                        f"GRPO-family recipe (trainer: grpo); this recipe's trainer is {recipe.trainer}")
    if recipe.rewards and not recipe.kind.online:
        problems.append(f"{where}: rewards: the {recipe.trainer} trainer takes no reward functions")
    if recipe.reference_free is not None and recipe.reference_free.value:
        label = _label(where, "reference_free", recipe.user_set)
        sync = recipe.config.get("sync_ref_model")
        if recipe.trainer != "dpo":
            problems.append(f"{label}: needs a DPO-family recipe (trainer: dpo); this recipe's trainer is {recipe.trainer}")
        elif sync is not None and sync.value:
            problems.append(f"{label}: a reference-free loss has no reference model to sync; set sync_ref_model=false")
    return problems


def reward_name(spec: str) -> str:
    """The name a reward function is logged under: 'accuracy', or 'f' for 'pkg.mod:f'."""
    return re.split(r"[:.]", spec)[-1] if ":" in spec else spec


def load(name_or_path: str, sets: list[str] = ()) -> Recipe:
    """Read, override and validate a recipe; every problem is reported at once."""
    path = locate(name_or_path)
    where = f"recipes/{path.relative_to(RECIPE_DIR)}" if shipped(path) else str(path)
    raw = read_raw(path)
    trainer = raw.get("trainer")
    if trainer not in KINDS:
        raise PaperrlError(f"{where}: trainer: {'missing' if trainer is None else repr(trainer)}"
                           f"{closest(trainer, KINDS) if trainer else ''}; accepted: {', '.join(KINDS)}")
    internal = [k for k in ("user_set", "file") if k in raw]  # set by paperrl, never by a recipe file
    if internal:
        raise PaperrlError(*(f"{where}: {k}: unknown key" for k in internal))
    user = apply_sets(raw, [parse_set(s) for s in sets], config_fields(KINDS[trainer].config_class))
    config = raw.get("config") if isinstance(raw.get("config"), dict) else {}
    user_fields = {p.split(".", 1)[1] for p in user if p.startswith("config.")}
    problems = _config_problems(config, KINDS[trainer], where, user_fields) + _argument_problems(raw, where, user)
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as exc:
        raise PaperrlError(*_pydantic_problems(where, exc, user), *problems) from None
    recipe.user_set = user
    recipe.file = str(path)
    problems += check(recipe, where)
    if problems:
        raise PaperrlError(*problems)
    return recipe
