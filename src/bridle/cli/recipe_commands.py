"""`bridle run RECIPE.yaml` and `bridle check-recipe`: parsing only; the work is in `bridle.recipes`."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("run", help="run a recipe: a pipeline of stages (sft → rm → ppo, rlaif → dpo, eval, ...)",
                       description="Run the stages of a recipe YAML in order, each into <output_dir>/<stage>/. The "
                                   "whole recipe is checked before any stage runs; a stage whose config and inputs "
                                   "are unchanged since it finished is skipped, an interrupted one resumes.",
                       allow_abbrev=False)
    p.add_argument("recipe", help="the recipe file (see examples/*.yaml and docs/recipes.md)")
    p.add_argument("--from", dest="start_from", metavar="STAGE",
                   help="run this stage and every later one anew, even when up to date")
    p.add_argument("--output-dir", help="where the stages go (default: the recipe's output_dir, else runs/<name>)")
    p.add_argument("--no-report", action="store_true", help="do not write report.html at the end")
    p.add_argument("--check", action="store_true", help="only check the recipe (every problem, by line) and exit")
    p.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> None:
    from bridle.engine.logging import console
    from bridle.recipes import load_recipe, run_recipe

    recipe = load_recipe(args.recipe, output_dir=args.output_dir)
    if args.check:
        console.print(f"{args.recipe}: {len(recipe.stages)} stages, all valid: "
                      + " → ".join(f"{s.name} ({s.target})" for s in recipe.stages))
        return
    out = run_recipe(recipe, start_from=args.start_from, report=False if args.no_report else None)
    console.print(f"recipe {recipe.name}: done in {out}")
