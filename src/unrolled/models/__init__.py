"""Complete models built from the layers: one file per model."""
from .language_model import LanguageModel

__all__ = ["LanguageModel"]
