"""`--dry-run --format python`: the resolved recipe as a standalone plain-TRL script (no paperrl import).

The script holds the resolved config values, and copies of the code paperrl adds on top of TRL,
taken from paperrl's own source (with every function and constant they use) so that the two cannot
drift apart: the data pipeline (loading, column map, row filters, prompt template and cap, chat
format), the reward functions, the callbacks, the LoRA config, the dynamic-sampling and normaliser
subclasses, the demo task. `build_trainer()` builds the trainer exactly as paperrl does;
tests/test_export.py compares what the two trainers receive.
"""

from __future__ import annotations

import importlib
import inspect
import pprint
import re
import textwrap

from paperrl import catalog, demo, rewards
from paperrl.errors import PaperrlError
from paperrl.resolve import Plan


def _source(*objects) -> str:
    return "\n\n".join(textwrap.dedent(inspect.getsource(o)).strip() for o in objects)


def _module_body(module) -> str:
    """A module's code without its docstring and `from __future__` line."""
    lines = inspect.getsource(module).splitlines()
    body = "\n".join(line for line in lines if not line.startswith("from __future__"))
    doc = module.__doc__ or ""
    return body.replace(f'"""{doc}"""', "", 1).strip()


def _with_dependencies(module, objects, skip=()) -> str:
    """`objects` and every function and constant of `module` they use, transitively, as source:
    constants first (as their repr), then the functions in the module's order."""
    def names(code) -> set[str]:
        return set(code.co_names).union(*(names(c) for c in code.co_consts if inspect.iscode(c)))

    functions, constants, todo = {}, {}, list(objects)
    while todo:
        fn = todo.pop()
        if fn.__name__ in functions:
            continue
        functions[fn.__name__] = fn
        for name in sorted(names(fn.__code__) - set(skip)):
            value = vars(module).get(name)
            if inspect.isfunction(value) and value.__module__ == module.__name__:
                todo.append(value)
            elif isinstance(value, (str, int, float, tuple, frozenset, dict, re.Pattern)) and not name.startswith("__"):
                constants[name] = value
    ordered = sorted(functions.values(), key=lambda f: f.__code__.co_firstlineno)
    return "\n\n".join([*(f"{k} = {v!r}" for k, v in constants.items()), _source(*ordered)])


def _rewards(plan: Plan) -> tuple[str, str]:
    code, calls, builtins = [], [], []
    for spec in plan.rewards:
        name = spec["name"]
        if name.startswith("model:"):
            calls.append(repr(name[len("model:"):]))
        elif ":" in name:
            target, func = name.rsplit(":", 1)
            if target.endswith(".py") or "/" in target:
                code.append(f"import importlib.util as _ilu\n_spec = _ilu.spec_from_file_location('user_reward', {target!r})\n"
                            f"_user = _ilu.module_from_spec(_spec)\n_spec.loader.exec_module(_user)\n{func} = _user.{func}")
            else:
                code.append(f"from {target} import {func}")
            calls.append(f"{func}(**{spec['args']!r})" if spec["args"] else func)
        else:
            builtins.append(rewards.BUILTIN[name])
            calls.append(f"{name}(**{spec['args']!r})")
    if builtins:
        code.insert(0, _with_dependencies(rewards, builtins))
    return "\n\n".join(code), "[" + ", ".join(calls) + "]"


def _data_module() -> str:
    """paperrl's data functions and constants, verbatim: the script loads, maps, filters, caps and
    formats the data with the same code as paperrl (only `_note`, a log line, is the script's own)."""
    from paperrl import data

    note = ("def _note(plan, notes):\n    if notes:\n        print(f\"dataset {plan.dataset}: \" + \"; \".join(notes), "
            "file=sys.stderr)")
    return "\n\n".join(["class PaperrlError(Exception):\n    pass", note,
                        _with_dependencies(data, [data.load, data.prepare], skip=("_note",))])


def _plan_view(plan: Plan) -> str:
    """The parts of the plan that the data functions and the LoRA config read, as plain namespaces."""
    recipe = plan.recipe

    def entry(sourced):
        return f"SimpleNamespace(value={sourced.value!r})" if sourced is not None else "None"

    options = {k: getattr(plan.options, k) for k in ("split", "subset", "columns", "lora_r", "lora_alpha", "dora")}
    dataset = f"SimpleNamespace(**{recipe.dataset.model_dump()!r})" if recipe.dataset else "None"
    kind = {k: getattr(plan.kind, k) for k in ("name", "online", "columns")}
    return (f"PLAN = SimpleNamespace(\n    dataset={plan.dataset!r}, demo_mode={plan.demo_mode!r},\n"
            f"    kind=SimpleNamespace(**{kind!r}),\n"
            f"    options=SimpleNamespace(**{options!r}),\n"
            f"    recipe=SimpleNamespace(name={recipe.name!r}, trainer={recipe.trainer!r}, dataset={dataset},\n"
            f"                           prompt_template={entry(recipe.prompt_template)}, "
            f"chat_template={entry(recipe.chat_template)}),\n)")


def _data(plan: Plan) -> str:
    parts = [_data_module(), _plan_view(plan)]
    if plan.dataset and plan.dataset.startswith("demo:"):
        parts += [
            "import random",
            f"SEED, MAX_OPERAND, TEST_PAIRS, VALIDATION_PAIRS = {demo.SEED}, {demo.MAX_OPERAND}, "
            f"{demo.TEST_PAIRS}, {demo.VALIDATION_PAIRS}",
            _source(demo._pairs, demo._wrong, plan.kind.task.row),
            "def load_train_dataset():\n    rng = random.Random(SEED + 1)\n"
            f"    return Dataset.from_list([{plan.kind.task.row.__name__}(a, b, rng) for a, b in _pairs('train')])",
        ]
    else:
        parts.append("def load_train_dataset():\n    return load(PLAN)")
    return "\n\n".join(parts)


def _callbacks(plan: Plan) -> tuple[str, str]:
    """(the callbacks' classes, as paperrl defines them; the list expression)."""
    from paperrl.recipe import CALLBACKS

    classes = {}
    for spec in plan.callbacks:
        module, name = CALLBACKS[spec["name"]].split(":")
        classes[name] = getattr(importlib.import_module(module), name)
    code = _source(*classes.values()) if classes else ""
    calls = [f"{CALLBACKS[c['name']].split(':')[1]}(**{c['args']!r})" for c in plan.callbacks]
    return code, "[" + ", ".join(calls) + "]"


def script(plan: Plan) -> str:
    gap = plan.kind.export_gap or ("SLiC-HF's reference-free stand-in model (`reference_free`)"
                                   if getattr(plan.recipe, "reference_free", None) and plan.recipe.reference_free.value
                                   else None)
    if gap:  # a script that trains something else would be worse than none
        raise PaperrlError(f"--format python: the exported script cannot build {gap} yet, so it would not train "
                           f"{plan.recipe.name} as paperrl does; run `paperrl {plan.recipe.name}` instead")
    config_module, config_class = plan.kind.config_class.split(":")
    trainer_module, trainer_class = plan.kind.trainer_class.split(":")
    reward_code, reward_list = _rewards(plan) if plan.kind.online else ("", "[]")
    parts = [
        "#!/usr/bin/env python",
        f'"""Plain TRL for the paperrl recipe {plan.recipe.name}: {plan.recipe.title} ({catalog.cite(plan.recipe.model_dump())}).\n\n'
        'Exported by `paperrl ... --dry-run --format python`. It imports no paperrl code.\n'
        'Run it with `python this_script.py`; `--print-config` prints the resolved TRL config and exits."""',
        "from __future__ import annotations\n\nimport json\nimport math\nimport re\nimport sys\nimport warnings\nfrom pathlib import Path\nfrom types import SimpleNamespace\n\nimport torch\nfrom datasets import Dataset, load_dataset\n"
        "from transformers import AutoTokenizer, TrainerCallback\n"
        f"with warnings.catch_warnings():\n    warnings.simplefilter('ignore')\n"
        f"    from {config_module} import {config_class}\n    from {trainer_module} import {trainer_class}",
        f"MODEL = {plan.model!r}\nCONFIG = {pprint.pformat(plan.config, sort_dicts=False)}",
    ]
    if reward_code:
        parts.append("# reward functions, as paperrl defines them\n" + reward_code)
    callback_code, callbacks = _callbacks(plan)
    if callback_code:
        parts.append("# callbacks, paperrl's implementation (TRL 1.16's BEMACallback fails on frozen/PEFT models)\n"
                     + callback_code)
    trainer_expr = trainer_class
    if plan.dynamic_sampling:
        from paperrl import sampling

        parts.append("# DAPO dynamic sampling, paperrl's subclass of TRL's trainer\n" + _module_body(sampling))
        trainer_expr = f"with_dynamic_sampling({trainer_expr}, {plan.dynamic_sampling!r})"
    if plan.recipe.exact_token_normaliser and plan.recipe.exact_token_normaliser.value:
        from paperrl import normaliser

        parts.append("# DAPO Eq. 12's exact token normaliser, paperrl's subclass\n" + _module_body(normaliser))
        trainer_expr = f"with_exact_token_normaliser({trainer_expr})"
    parts.append("# data\n" + _data(plan))
    from paperrl.builder import peft_config

    parts.append("# LoRA (--lora-r), as paperrl builds it\n" + _source(peft_config))
    reward_arg = f"\n        reward_funcs={reward_list}," if plan.kind.online else ""
    parts.append(textwrap.dedent(f'''\
        def build_trainer():
            """The trainer, built as paperrl builds it: the same data, settings, rewards, callbacks and LoRA."""
            args = {config_class}(**CONFIG)
            tokenizer = AutoTokenizer.from_pretrained(MODEL)
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            data = prepare(load_train_dataset(), PLAN, tokenizer)
            kwargs = dict(model=MODEL, args=args, train_dataset=data, processing_class=tokenizer,{reward_arg}
                          callbacks={callbacks})
            if peft_config(PLAN) is not None:
                kwargs["peft_config"] = peft_config(PLAN)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*experimental.*")
                return ({trainer_expr})(**kwargs)


        def main():
            if "--print-config" in sys.argv:
                print(json.dumps({config_class}(**CONFIG).to_dict(), default=str))
                return
            trainer = build_trainer()
            trainer.train()
            trainer.save_model(trainer.args.output_dir + "/model")


        if __name__ == "__main__":
            main()'''))
    return "\n\n\n".join(parts) + "\n"
