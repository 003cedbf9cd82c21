#!/usr/bin/env python
"""D2L's exercises answered with data, one book section at a time (``--section 3.7 5.6``, or ``all``): each
answer trains through the engine (``regjax.engine.sweep``: many configurations and seeds, one compiled program) and
comes with a plot or a table. ``exercises.md`` in --out collects question, answer and evidence; docs/exercises.md
lists all 108 exercises of §3.1-3.7, §4.1-4.4, §5.1-5.7 and §8.5 with these answers. The sections' code is in
experiments/exercise_answers/ (one module per section). ``--tiny`` runs a section at tiny sizes in seconds, to
check that it works (its numbers mean nothing)."""
from __future__ import annotations

import importlib
from pathlib import Path

from exercise_answers.common import markdown

from regjax import runner

MODULES = sorted((p.stem for p in (Path(__file__).resolve().parent / "exercise_answers").glob("s*_*.py")),
                 key=lambda name: tuple(int(n) for n in name[1:].split("_")))
SECTIONS = {m.SECTION: m for m in (importlib.import_module(f"exercise_answers.{name}") for name in MODULES)}


def build_parser():
    p = runner.parser(__doc__, epochs=100, lr=0.003, batch_size=5, out="runs/exercises", image_dataset=True,
                      match_steps=False)
    p.add_argument("--section", choices=[*SECTIONS, "all"], nargs="+", required=True,
                   help="book sections to answer ('all': every one, which takes a while)")
    p.add_argument("--seeds", type=runner.positive_int, default=4, help="seeds per configuration")
    p.add_argument("--tiny", action="store_true",
                   help="tiny sizes: a seconds-long run that checks the commands work (the numbers mean nothing)")
    for module in SECTIONS.values():
        if hasattr(module, "add_arguments"):
            module.add_arguments(p.add_argument_group(f"§{module.SECTION} {module.TITLE.lower()}"))
    return p


def main(argv=None):
    with runner.Run("exercises", build_parser(), argv) as run:
        sections = list(SECTIONS) if "all" in run.args.section else list(dict.fromkeys(run.args.section))
        for s in sections:
            if hasattr(SECTIONS[s], "check"):
                SECTIONS[s].check(run, sections)
        answers = []
        for s in sections:
            answers += SECTIONS[s].section(run)
        md = run.out / "exercises.md"
        md.write_text(markdown(answers))
        run.say("\n".join(f"[{a['id']}] {a['answer']}" for a in answers) + f"\nanswers: {md}")
        plots = [a["plot"] for a in answers if a["plot"]]
        payload = {"answers": answers, "plots": plots, "outputs": [str(md)]}
        run.finish(payload)
    return payload


if __name__ == "__main__":
    runner.script(main)
