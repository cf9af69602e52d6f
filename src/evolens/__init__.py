"""evolens: how knowledge evolves, layer by layer, inside vision-language models while they generate."""

from evolens.errors import EvolensError
from evolens.models import LoadedModel, load_model

__version__ = "0.1.0"

__all__ = ["EvolensError", "LoadedModel", "__version__", "load_model"]
