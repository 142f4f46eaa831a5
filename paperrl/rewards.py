"""Named reward functions (TRL's own first) and the user's `module:function` rewards.

Every reward handed to TRL is wrapped so that (1) it accepts both plain-text and chat
completions, (2) a failure names the function and the sample instead of a TRL traceback, and
(3) the dataset columns it reads are known before training starts (the column check).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import sys
from pathlib import Path

from paperrl.errors import PaperrlError, closest
from paperrl.recipe import reward_name
from paperrl.kinds import KINDS
from paperrl.trl_fields import reward_arguments


def _trl_args() -> set[str]:
    """Arguments TRL passes to every reward function, read from the installed TRL's trainers;
    anything else a function names is a dataset column."""
    return {"kwargs"}.union(*(reward_arguments(k.trainer_class) for k in KINDS.values() if k.online))


class RewardFailed(Exception):
    """A reward function raised: carries its name and the sample it failed on."""


def _text(completion) -> str:
    if isinstance(completion, list):  # chat format: [{"role": "assistant", "content": ...}]
        return completion[-1].get("content", "") if completion else ""
    return str(completion)


def _as_chat(completions):
    return [c if isinstance(c, list) else [{"role": "assistant", "content": str(c)}] for c in completions]


def _rescale(values, correct: float, wrong: float):
    return [None if v is None else (correct if v >= 0.5 else wrong) for v in values]


# ---------------------------------------------------------------- built-in rewards


def accuracy(correct: float = 1.0, wrong: float = 0.0, truncated: float | None = None, max_completion_len: int = 0):
    """Math-verify accuracy (trl.rewards.accuracy_reward) against `solution`, on the chosen scale.

    With `truncated` set, a completion that fills all `max_completion_len` tokens (it was cut off, or
    its end-of-text is the very last token) scores `truncated` whatever its answer."""
    from trl.rewards import accuracy_reward

    def accuracy(completions, solution, completion_ids=None, **kwargs):
        scores = _rescale(accuracy_reward(_as_chat(completions), solution), correct, wrong)
        if truncated is None or completion_ids is None:
            return scores
        return [truncated if len(ids) >= int(max_completion_len) else s for s, ids in zip(scores, completion_ids)]

    return accuracy


# DAPO's verifier: volcengine/verl verl/utils/reward_score/math_dapo.py (compute_score, the default
# strict_box_verify=False). The prediction is the text after the last "Answer:" in the completion's last
# 300 characters; prediction and ground truth are normalised as in Minerva (Lewkowycz et al. 2022,
# App. D.1) and compared as strings. DAPO-Math-17k's prompts ask for that last line.
_ANSWER_LINE = re.compile(r"(?i)Answer\s*:\s*([^\n]+)")
_REPLACED = (("an ", ""), ("a ", ""), (".$", "$"), ("\\$", ""), ("\\ ", ""), (" ", ""), ("mbox", "text"),
             (",\\text{and}", ","), ("\\text{and}", ","), ("\\text{m}", "\\text{}"))
_REMOVED = ("square", "ways", "integers", "dollars", "mph", "inches", "hours", "km", "units", "\\ldots", "sue",
            "points", "feet", "minutes", "digits", "cents", "degrees", "cm", "gm", "pounds", "meters", "meals",
            "edges", "students", "childrentickets", "multiples", "\\text{s}", "\\text{.}", "\\text{\ns}",
            "\\text{}^2", "\\text{}^3", "\\text{\n}", "\\text{}", "\\mathrm{th}", "^\\circ", "^{\\circ}",
            "\\;", ",\\!", "{,}", '"', "\\dots")


def minerva_normalise(answer: str) -> str:
    """A final answer in Minerva's normal form (the order of the steps matters)."""
    answer = answer.split("=")[-1]
    for old, new in _REPLACED:
        answer = answer.replace(old, new)
    for text in _REMOVED:
        answer = answer.replace(text, "")
    answer = re.sub(r"(.*?)(\$)(.*?)(\$)(.*)", "$\\3$", answer)  # the first $...$ only
    for macro in ("text", "textbf", "overline"):
        answer = re.sub(rf"(\\{macro}\{{)(.*?)(\}})", "\\2", answer)
    answer = re.sub(r"(\\boxed\{)(.*)(\})", "\\2", answer)
    answer = re.sub(r"(frac)([^{])(.)", "frac{\\2}{\\3}", answer)  # \frac12 -> \frac{1}{2}
    answer = re.sub(r"(sqrt)([^{])", "sqrt{\\2}", answer)  # \sqrt2 -> \sqrt{2}
    answer = answer.replace("$", "")
    if answer.replace(",", "").isdigit():
        answer = answer.replace(",", "")
    return answer.strip()


def dapo_accuracy(correct: float = 1.0, wrong: float = -1.0):
    """DAPO's rule-based reward (Eq. 8): the last `Answer: X` line equals `solution` after normalisation."""

    def dapo_accuracy(completions, solution, **kwargs):
        out = []
        for completion, answer in zip(completions, solution):
            found = _ANSWER_LINE.findall(_text(completion)[-300:])
            same = bool(found) and minerva_normalise(found[-1]) == minerva_normalise(str(answer))
            out.append(correct if same else wrong)
        return out

    return dapo_accuracy


def answer_match(correct: float = 1.0, wrong: float = 0.0):
    """Exact integer answer: the demo task's verifiable reward (the first number must equal `solution`)."""

    def answer_match(completions, solution, **kwargs):
        out = []
        for completion, answer in zip(completions, solution):
            found = re.match(r"\s*(-?\d+)", _text(completion))
            out.append(correct if found and found.group(1) == str(answer).strip() else wrong)
        return out

    return answer_match


def soft_overlong_punishment(max_completion_len: int, soft_punish_cache: int):
    """DAPO Eq. 13, TRL's implementation (trl.rewards.get_soft_overlong_punishment)."""
    from trl.rewards import get_soft_overlong_punishment

    fn = get_soft_overlong_punishment(max_completion_len=int(max_completion_len),
                                      soft_punish_cache=int(soft_punish_cache))
    fn.__name__ = "soft_overlong_punishment"
    return fn


def think_format():
    """<think>...</think> format reward (trl.rewards.think_format_reward)."""
    from trl.rewards import think_format_reward

    def think_format(completions, **kwargs):
        return think_format_reward(_as_chat(completions))

    return think_format


def repetition_penalty(ngram_size: int = 3, max_penalty: float = -1.0):
    """Repeated n-gram penalty (trl.rewards.get_repetition_penalty_reward)."""
    from trl.rewards import get_repetition_penalty_reward

    fn = get_repetition_penalty_reward(ngram_size=int(ngram_size), max_penalty=float(max_penalty))
    fn.__name__ = "repetition_penalty"
    return fn


def cosine_scaled(max_len: int, min_value_wrong: float = -1.0, max_value_wrong: float = -0.5,
                  min_value_correct: float = 0.5, max_value_correct: float = 1.0, exceed_length: float | None = None,
                  verifier: str = "accuracy"):
    """Demystifying Long CoT's cosine length-scaling reward (trl.rewards.get_cosine_scaled_reward): a correct
    completion scores max_value_correct at length 0 down to min_value_correct at max_len tokens, a wrong one
    min_value_wrong up to max_value_wrong. Correctness is math-verify's against `solution` (verifier "accuracy") or
    the demo task's exact integer answer ("answer_match"). With `exceed_length`, a completion that reaches max_len
    tokens scores exceed_length (the paper's r_e; TRL's function has none and keeps the long-length value)."""
    from trl.rewards import get_cosine_scaled_reward

    if verifier not in ("accuracy", "answer_match"):
        raise PaperrlError(f"reward cosine_scaled: verifier {verifier!r}; accepted: accuracy, answer_match")
    fn = get_cosine_scaled_reward(max_len=int(max_len), min_value_wrong=float(min_value_wrong),
                                  max_value_wrong=float(max_value_wrong), min_value_correct=float(min_value_correct),
                                  max_value_correct=float(max_value_correct))
    match = answer_match()

    def cosine_scaled(completions, solution, completion_ids, **kwargs):
        if verifier == "accuracy":
            scores = fn(_as_chat(completions), solution, completion_ids)
        else:  # TRL's schedule on the exact-answer verdicts: an answer math-verify accepts, or one it rejects
            right = match(completions, solution)
            scores = fn([[{"role": "assistant", "content": "\\boxed{1}"}]] * len(right),
                        ["1" if r == 1.0 else "2" for r in right], completion_ids)
        if exceed_length is None:
            return scores
        return [float(exceed_length) if len(ids) >= int(max_len) else s for s, ids in zip(scores, completion_ids)]

    return cosine_scaled


BUILTIN = {f.__name__: f for f in (accuracy, dapo_accuracy, answer_match, soft_overlong_punishment, think_format,
                                   repetition_penalty, cosine_scaled)}


# ---------------------------------------------------------------- user rewards


def _load_user_function(spec: str):
    target, _, func = spec.rpartition(":")
    if not target or not func:
        raise PaperrlError(f"reward {spec}: expected module:function or path/to/file.py:function")
    if target.endswith(".py") or "/" in target:
        path = Path(target)
        if not path.is_file():
            raise PaperrlError(f"reward {spec}: file {target} not found")
        name = f"paperrl_user_reward_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - the user's file: report, don't crash
            raise PaperrlError(f"reward {spec}: importing {target} failed: {exc.__class__.__name__}: {exc}") from None
    else:
        try:
            module = importlib.import_module(target)
        except Exception as exc:  # noqa: BLE001
            raise PaperrlError(f"reward {spec}: cannot import module {target} ({exc.__class__.__name__}: {exc})") from None
    fn = getattr(module, func, None)
    if not callable(fn):
        public = [n for n in dir(module) if not n.startswith("_")]
        raise PaperrlError(f"reward {spec}: {target} has no function '{func}'{closest(func, public)}")
    return fn


def required_columns(fn) -> list[str]:
    """Dataset columns a reward function reads: its named parameters TRL does not supply."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in params if p.name not in _trl_args()
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is p.empty]


def _guarded(fn, name: str):
    def reward(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - stop with a message that names the function and sample
            prompts, completions = kwargs.get("prompts") or [""], kwargs.get("completions") or [""]
            sample = f"prompt {_text(prompts[0])[:80]!r}, completion {_text(completions[0])[:80]!r}"
            raise RewardFailed(f"reward function '{name}' raised {exc.__class__.__name__}: {exc} "
                               f"(first sample of the batch: {sample})") from exc

    reward.__name__ = name
    return reward


def build(specs: list[dict]):
    """(reward functions for TRL, {name: dataset columns it needs})."""
    funcs, needs = [], {}
    for spec in specs:
        name = spec["name"]
        if name.startswith("model:"):
            funcs.append(name[len("model:"):])  # a reward model id or directory: TRL loads it
            continue
        if ":" in name:
            fn = _load_user_function(name)
            if spec["args"]:
                fn = fn(**spec["args"])
        elif name in BUILTIN:
            try:
                fn = BUILTIN[name](**spec["args"])
            except TypeError as exc:
                raise PaperrlError(f"reward {name}: {exc}") from None
        else:
            raise PaperrlError(f"reward '{name}': unknown{closest(name, BUILTIN)}; accepted: "
                               f"{', '.join(BUILTIN)}, model:<reward model>, module:function or file.py:function")
        label = reward_name(name)
        needs[label] = required_columns(fn)
        funcs.append(_guarded(fn, label))
    return funcs, needs
