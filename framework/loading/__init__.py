"""Recipe loading: Hydra composition over the template search path, hostile-input checks, error reports."""

from framework.loading.compose import LoadedRecipe, load_recipe, resolve_saved, split_args, validate_dict

__all__ = ["LoadedRecipe", "load_recipe", "resolve_saved", "split_args", "validate_dict"]
