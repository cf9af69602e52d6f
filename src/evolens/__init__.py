"""evolens: how knowledge evolves, layer by layer, inside vision-language models while they generate."""

from evolens.errors import EvolensError
from evolens.models import LoadedModel, load_model
from evolens.trace import trace  # the function: ``evolens.trace(...)``; the module is ``evolens.trace`` too

__version__ = "0.1.0"

__all__ = ["EvolensError", "LoadedModel", "__version__", "load_model", "trace"]
