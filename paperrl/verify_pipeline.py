"""`paperrl verify`, beyond the loss: the rest of a recipe's pipeline against what the paper states.

Each row compares what a run with `--model` would do (paperrl's data pipeline and reward functions on rows with
the paper dataset's published schema, the TRL config built by TRL, the optimizer and scheduler that transformers'
Trainer builds from it) with what the recipe states the paper gives: the shipped recipe's sourced values, read
before any `--set`. The expected side is computed here without TRL: the learning rate from the schedule's
formula, the batch from the paper's counts, the reward from answers marked right or wrong by hand, the prompt
from the template's text, the kept rows from the filter's rule. Nothing is sampled and no model weights are read.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import tempfile
from pathlib import Path
from types import SimpleNamespace

from paperrl.errors import PaperrlError
from paperrl.verify import Check

PROCESSES = (1, 8)  # the batch is checked as TRL would split it on one process and on eight
TRAINING_STEPS = 1000  # a nominal run length: the schedule's shape, not the paper's run length, is checked
ROW_ID = "verify_row"  # added to each row written here, to follow it through the filters

# ---------------------------------------------------------------- the paper datasets, written by hand
#
# Rows with each public dataset's published columns and nesting (keyed by its hub name, not by recipe), and
# completions marked right or wrong by the paper's grader for the row (by index) whose answer they give.

DAPO_PROMPT = ("Solve the following math problem step by step. The last line of your response should be of the form "
               "Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\n{problem}\n\n"
               "Remember to put your answer on its own line after \"Answer:\".")


def _dapo_math_row(problem: str, answer: str, index: int) -> dict:
    return {"data_source": "math_dapo", "prompt": [{"content": DAPO_PROMPT.format(problem=problem), "role": "user"}],
            "ability": "MATH", "reward_model": {"ground_truth": answer, "style": "rule-lighteval/MATH_v2"},
            "extra_info": {"index": f"00000000-0000-0000-0000-{index:012d}"}}


def _math_row(problem: str, level: int, answer: str) -> dict:
    return {"problem": problem, "level": f"Level {level}", "type": "Algebra",
            "solution": f"Working it through, the answer is $\\boxed{{{answer}}}$."}


DATASETS = {
    "BytedTsinghua-SIA/DAPO-Math-17k": {
        "rows": [_dapo_math_row("Find $a + b + c$ if $a = 30$, $b = 3$ and $c = 1$.", "34", 0),
                 _dapo_math_row("How many positive divisors does $1000$ have?", "16", 1)],
        "answers": [(0, "30 + 3 + 1 = 34.\nAnswer: 34", True),  # the last line the prompt asks for
                    (0, "answer: $34$", True),  # case and dollars are normalised away (Minerva)
                    (0, "The sum is $\\boxed{34}$.", False),  # no Answer: line: wrong, as in the paper's verifier
                    (0, "I first wrote Answer: 34, then corrected it.\nAnswer: 35", False),  # the last line counts
                    (1, "1000 = 2^3 5^3, so 4 x 4.\nAnswer: 16", True)],
    },
    "DigitalLearningGmbH/MATH-lighteval": {
        "rows": [_math_row("What is $\\frac{3}{6}$ in lowest terms?", 3, "\\frac{1}{2}"),
                 _math_row("Compute $2 + 3$.", 1, "5"), _math_row("Compute $7 \\cdot 8$.", 2, "56"),
                 _math_row("Solve $x^2 = 81$ for $x > 0$.", 4, "9"), _math_row("Compute $12^2$.", 5, "144")],
        "answers": [(0, "Halving both, $\\boxed{\\frac{1}{2}}$.", True),
                    (0, "So the answer is $\\boxed{\\dfrac{1}{2}}$.", True),
                    (0, "As a decimal: $\\boxed{0.5}$.", True),  # math-verify compares values
                    (0, "$\\boxed{2}$", False), (3, "Taking the root, $\\boxed{9}$.", True)],
    },
    "trl-lib/tldr": {
        "rows": [{"prompt": f"SUBREDDIT: r/test\n\nTITLE: Post {i}\n\nPOST: I added {i} and {i}.\n\nTL;DR:",
                  "completion": f" {i} + {i} = {2 * i}"} for i in range(2)],
        "answers": [],
    },
}


class Words:
    """A whitespace tokenizer standing in for the model's: the prompt cap's rule, not a vocabulary, is checked."""

    chat_template = None

    def __call__(self, text: str) -> dict:
        return {"input_ids": text.split()}


# ---------------------------------------------------------------- rows


def _row(check: str, source: str, expected: dict, actual: dict, note: str = "", rel: float = 1e-6) -> Check:
    """Compare named numbers; a name the run lacks, or nothing to compare, fails."""
    diff = max((abs(v - actual[k]) if k in actual else math.inf for k, v in expected.items()), default=math.inf)
    scale = max((abs(v) for v in expected.values()), default=0.0) or 1.0
    shown = "; ".join(f"{k}: paper {v:g}, run {actual.get(k, float('nan')):g}" for k, v in expected.items())
    return Check(check, source, diff, rel * scale, note="; ".join(filter(None, [note, shown])), relative=diff / scale)


def _gap(check: Check, fields: list[str], gaps: list[str]) -> Check:
    """A row whose expected values include one the recipe leaves unsourced: GAP instead of PASS."""
    unsourced = [f for f in fields if f in gaps]
    if unsourced:
        check.note += f"; gap: the recipe states no source for {', '.join(unsourced)} (TRL's default is compared)"
        if check.status == "PASS":
            check.status = "GAP"
    return check


def _resolve(recipe_name: str, sets: list[str], num_processes: int = 1):
    from paperrl import recipe as recipes
    from paperrl.resolve import Options, resolve

    return resolve(recipes.load(recipe_name, sets),
                   Options(model="paper", output_dir="/tmp/paperrl-verify", num_processes=num_processes))


def stated(plan, name: str):
    """The value a plan gives a TRL field: the recipe's, else TRL's default (read from TRL's source)."""
    return plan.config.get(name, plan.recipe.trl_fields()[name][0])


def lr_at(step: int, lr: float, schedule: str, warmup: float, total: int, min_rate: float = 0.0) -> float:
    """The paper's schedule by its name: a linear warm-up from 0 over `warmup` steps (a fraction of `total` when
    below 1), then constant, linear decay to 0, half a cosine to 0 at `total`, or the inverse square root of the
    step (lr x sqrt(warm-up / step), as in the Transformer)."""
    warm = math.ceil(total * warmup) if 0 < warmup < 1 else int(warmup)
    if schedule == "constant":
        return lr
    if step < warm:
        return lr * step / warm
    progress = (step - warm) / max(1, total - warm)
    shapes = {"constant_with_warmup": 1.0, "linear": max(0.0, 1.0 - progress),
              "cosine": max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress))),
              "inverse_sqrt": math.sqrt(warm / max(step, 1)),
              # half a cosine down to min_rate x lr (Llama 2's reward model: 'down to 10% of the maximum')
              "cosine_with_min_lr": min_rate + (1 - min_rate) * max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))}
    return lr * shapes[schedule]


def trl_learning_rates(config, steps: list[int], total: int) -> dict[int, float]:
    """The learning rate at `steps` from the optimizer and scheduler transformers' Trainer builds for `config`."""
    import torch
    from transformers import Trainer

    cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(config)
    optimizer = cls([torch.nn.Parameter(torch.zeros(1))], **kwargs)
    scheduler = Trainer.create_scheduler(SimpleNamespace(args=config, lr_scheduler=None), total, optimizer)
    out = {}
    for step in range(max(steps) + 1):
        if step in steps:
            out[step] = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
    return out


def check_schedule(paper, config, gaps: list[str]) -> Check:
    names = ("learning_rate", "lr_scheduler_type", "warmup_steps")
    lr, schedule, warmup = (stated(paper, n) for n in names)
    # a warm-up in steps longer than the nominal run (GKD: 2,000) gets a run twice its length (distill-sft)
    total = max(TRAINING_STEPS, 2 * int(warmup)) if warmup >= 1 else TRAINING_STEPS
    warm = math.ceil(total * warmup) if 0 < warmup < 1 else int(warmup)
    steps = sorted({0, warm // 2, warm, warm + 1, (warm + total) // 2, total - 1})
    source = "; ".join(dict.fromkeys(paper.sources[n] for n in names if n in paper.sources and n not in gaps))
    run = trl_learning_rates(config, steps, total)
    try:
        min_rate = (stated(paper, "lr_scheduler_kwargs") or {}).get("min_lr_rate", 0.0)
        expected = {f"step {s}": lr_at(s, lr, schedule, warmup, total, min_rate) for s in steps}
    except KeyError:
        return Check("learning rate at chosen steps", source, math.inf, 0.0,
                     note=f"no reference for the schedule {schedule!r}")
    check = _row("learning rate at chosen steps (the optimizer and scheduler TRL's Trainer builds)", source, expected,
                 {f"step {s}": v for s, v in run.items()},
                 note=f"paper: {schedule}, lr {lr:g}, warm-up {warmup:g} ({warm} of {total} steps)",
                 rel=1e-5)
    return _gap(check, list(names), gaps)


def check_epochs(paper, config, gaps: list[str]) -> Check:
    names = ("num_train_epochs", "max_steps")
    expected = {"epochs": stated(paper, "num_train_epochs"), "max_steps": stated(paper, "max_steps")}
    kept = [n for n in names if paper.origin.get(n) == "trl-default" and n not in gaps]
    note = "max_steps -1: the epochs decide the run's length" + \
        (f"; the recipe keeps TRL's default for {', '.join(kept)}, with its reason" if kept else "")
    check = _row("epochs", paper.sources.get("num_train_epochs", ""), expected,
                 {"epochs": config.num_train_epochs, "max_steps": config.max_steps}, note=note)
    return _gap(check, list(names), gaps)


def paper_batch(recipe) -> dict:
    """The paper's batch in samples, from the recipe's stated counts."""
    b = recipe.batch

    def value(entry):
        return entry.pick(False)[0] if entry is not None else None

    per_step = value(b.completions_per_step) or value(b.examples_per_step)
    prompts, per_prompt, steps = value(b.prompts_per_rollout), value(b.completions_per_prompt), value(b.steps_per_rollout)
    out = {"per update": per_step} if per_step else {}
    if not recipe.kind.online:
        return out
    if prompts and per_prompt:
        out["per rollout"] = prompts * per_prompt
    elif per_step and steps:
        out["per rollout"] = per_step * steps
    if per_prompt:
        out["per prompt"] = per_prompt
    rule = next((r.factor for r in recipe.rules
                 if r.field == "steps_per_generation" and r.depends_on == "gradient_accumulation_steps"), None)
    updates = steps or (out["per rollout"] / per_step if per_step and "per rollout" in out else None) or rule
    if updates:
        out["updates per rollout"] = updates
    return out


def run_batch(config, num_processes: int, online: bool) -> dict:
    """The batch a TRL config trains with on `num_processes` processes, in samples."""
    b, ga = config.per_device_train_batch_size, config.gradient_accumulation_steps
    out = {"per update": b * num_processes * ga}  # Trainer: per-device batch x processes x accumulation
    if online and hasattr(config, "generation_batch_size"):  # A*-PO: one completion per prompt, no rollout batch
        spg = config.steps_per_generation or ga
        # TRL's post-init, on this one process: generation_batch_size = per-device batch x processes x spg
        out["per rollout"] = config.generation_batch_size * num_processes
        out["per prompt"] = config.num_generations
        out["updates per rollout"] = spg / ga * (getattr(config, "num_iterations", 1) or 1)
    return out


def check_batch(paper, recipe_name: str, sets: list[str], num_processes: int) -> Check:
    from paperrl.resolve import build_config

    what = "samples per update and per rollout" if paper.recipe.kind.online else "examples per update"
    name = f"{what} on {num_processes} process{'es' if num_processes > 1 else ''}"
    expected = paper_batch(paper.recipe)
    source = "; ".join(dict.fromkeys(e.source for _, e in paper.recipe.batch if e is not None)) or \
        next((r.source for r in paper.recipe.rules), "")
    try:
        config = build_config(_resolve(recipe_name, sets, num_processes))
    except PaperrlError as exc:
        return Check(name, source, math.inf, 0.0, note=str(exc))
    fields = ("per_device_train_batch_size", "gradient_accumulation_steps", "steps_per_generation", "num_generations")
    trl = ", ".join(f"{f}={getattr(config, f)}" for f in fields if hasattr(config, f))
    return _row(name, source, expected, run_batch(config, num_processes, paper.recipe.kind.online), note=f"TRL: {trl}")


# ---------------------------------------------------------------- data: filter, template, verifier


def _prompt_column(recipe) -> str:
    return recipe.dataset.columns.get("prompt", "prompt")


def expected_prompt(paper, row: dict):
    """The prompt a row should become: the template the recipe quotes, around the row's prompt column."""
    prompt = row[_prompt_column(paper.recipe)]
    template = paper.recipe.prompt_template
    value = template.pick(False)[0] if template is not None else None
    return value.replace("{prompt}", prompt) if value and isinstance(prompt, str) else prompt


def _kept_by_paper(paper, row: dict) -> bool:
    ds = paper.recipe.dataset
    if not all(row.get(column) in allowed for column, allowed in ds.where.items()):
        return False
    prompt = expected_prompt(paper, row)
    text = prompt if isinstance(prompt, str) else " ".join(m.get("content", "") for m in prompt)
    return not ds.max_prompt_tokens or len(Words()(text)["input_ids"]) <= ds.max_prompt_tokens


def _rows(paper, table: dict) -> list[dict]:
    """The table's rows, plus, under a prompt cap, prompts of a few tokens either side of it."""
    rows = list(table["rows"])
    cap = paper.recipe.dataset.max_prompt_tokens
    base = next((r for r in rows if _kept_by_paper(paper, r)), None)
    if cap and base is not None:
        column = _prompt_column(paper.recipe)
        overhead = len(Words()(expected_prompt(paper, {**base, column: "w"}))["input_ids"]) - 1
        rows += [{**base, column: " ".join(["w"] * (cap - overhead + d))} for d in (-1, 0, 1, 2)]
    return [{**row, ROW_ID: i} for i, row in enumerate(rows)]


def _load(plan, rows: list[dict]) -> dict[int, dict]:
    """paperrl's data pipeline (mapping, filters, template, prompt cap) on `rows` as a local file: kept rows by id."""
    from paperrl import data as datamod

    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stderr(io.StringIO()):
        path = Path(tmp) / "rows.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        plan.dataset = str(path)
        data = datamod.prepare(datamod.load(plan), plan, Words())
        return {row[ROW_ID]: row for row in data}


def check_filter(paper, rows: list[dict], kept: dict) -> Check:
    ds = paper.recipe.dataset
    expected = [r[ROW_ID] for r in rows if _kept_by_paper(paper, r)]
    missing, extra = set(expected) - set(kept), set(kept) - set(expected)
    rule = [f"{column} in {allowed}" for column, allowed in ds.where.items()]
    rule += [f"prompts of at most {ds.max_prompt_tokens} tokens (whitespace tokens here)"] if ds.max_prompt_tokens else []
    return Check("data filter: the rows kept", ds.source, float(len(missing | extra)), 0.0,
                 note=f"{' and '.join(rule)}: paper keeps rows {expected} of {len(rows)}, run keeps {sorted(kept)}")


def check_template(paper, rows: list[dict], kept: dict) -> Check:
    template = paper.recipe.prompt_template
    pairs = [(expected_prompt(paper, r), kept[r[ROW_ID]]["prompt"]) for r in rows if r[ROW_ID] in kept]
    wrong = [(e, a) for e, a in pairs if e != a]
    note = f"{len(pairs)} prompts compared with the template the recipe quotes"
    if wrong:
        note += f"; first difference: paper {wrong[0][0][:120]!r}, run {wrong[0][1][:120]!r}"
    return Check("prompt template: the text the model is given", template.source,
                 float(len(wrong)) if pairs else math.inf, 0.0, note=note)


def _verifiers(plan) -> list[tuple]:
    """(function, resolved spec) of the run's rewards that grade against a dataset column (the answer)."""
    from paperrl import rewards as rewardmod
    from paperrl.recipe import reward_name

    funcs, needs = rewardmod.build(plan.rewards)
    return [(f, spec) for f, spec in zip(funcs, plan.rewards) if needs.get(reward_name(spec["name"]))]


def check_verifier(paper, run, table: dict, kept: dict) -> Check:
    """The run's reward on completions marked right or wrong by hand; expected: the paper's scale (the shipped
    recipe's `correct`/`wrong`, else 1/0), and its `truncated` score for an answer that fills the length limit."""
    shipped = [spec for _, spec in _verifiers(paper)]
    cases = [(i, text, right, len(text)) for i, text, right in table["answers"]]
    cut = next((s["args"] for s in shipped if "truncated" in s["args"]), None)
    if cut is not None:
        first = next(c for c in cases if c[2])
        cases.append((first[0], first[1], True, int(cut["max_completion_len"])))

    def paper_score(right: bool, length: int) -> float:
        total = 0.0
        for spec in shipped:
            args = spec["args"]
            if "truncated" in args and length >= int(args["max_completion_len"]):
                total += spec["weight"] * args["truncated"]
            else:
                total += spec["weight"] * (args.get("correct", 1.0) if right else args.get("wrong", 0.0))
        return total

    verifiers = _verifiers(run)
    expected, actual = {}, {}
    for n, (i, text, right, length) in enumerate(cases):
        key = f"{n}: {text[:40]!r}" + (f" ({length} tokens)" if length > len(text) else "")
        expected[key] = paper_score(right, length)
        if i not in kept:
            continue
        row = kept[i]
        completion = [{"role": "assistant", "content": text}] if isinstance(row["prompt"], list) else text
        columns = {k: [v] for k, v in row.items() if k != "prompt"}
        actual[key] = sum(spec["weight"] * f(prompts=[row["prompt"]], completions=[completion],
                                             completion_ids=[[0] * length], **columns)[0]
                          for f, spec in verifiers)
    source = "; ".join(s.source for s in paper.recipe.rewards if s.name in {spec["name"] for spec in shipped})
    return _row(f"reward verifier on {paper.recipe.dataset.name}'s answer format", source, expected, actual)


# ---------------------------------------------------------------- all rows of a recipe


def verify_pipeline(recipe_name: str, sets: list[str]) -> list[Check]:
    """The pipeline rows: verifier, template, filter (where the paper's dataset is known here), batch on 1 and 8
    processes, schedule and epochs."""
    from paperrl.resolve import build_config, gaps

    paper = _resolve(recipe_name, [])  # what the recipe says the paper says
    run = _resolve(recipe_name, sets)
    gap_fields = gaps(paper.recipe)
    checks = []
    table = DATASETS.get(paper.recipe.dataset.name) if paper.recipe.dataset else None
    if table is not None:
        rows = _rows(paper, table)
        kept = _load(run, rows)
        if table["answers"] and _verifiers(paper):
            checks.append(check_verifier(paper, run, table, kept))
        if paper.recipe.prompt_template is not None and paper.recipe.prompt_template.pick(False)[0]:
            checks.append(check_template(paper, rows, kept))
        if paper.recipe.dataset.where or paper.recipe.dataset.max_prompt_tokens:
            checks.append(check_filter(paper, rows, kept))
    checks += [check_batch(paper, recipe_name, sets, n) for n in PROCESSES if paper_batch(paper.recipe)]
    config = build_config(run)
    checks += [check_schedule(paper, config, gap_fields), check_epochs(paper, config, gap_fields)]
    return checks
