"""Recipes: whole pipelines (SFT → RM → PPO, RLAIF → DPO, ...) written once in YAML, validated before anything
runs, rerun safely (unchanged stages are skipped, an interrupted one resumes) and reported at the end."""

from bridle.recipes.runner import run_recipe
from bridle.recipes.spec import Recipe, Stage, load_recipe

__all__ = ["Recipe", "Stage", "load_recipe", "run_recipe"]
