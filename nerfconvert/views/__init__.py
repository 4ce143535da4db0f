"""Two-level views (phi1 / phi2) of the four architecture families, and ``load_run``."""

from nerfconvert.views.base import Decoded, FieldView
from nerfconvert.views.registry import SUPPORTED_MODELS, load_run, view_for

__all__ = ["Decoded", "FieldView", "SUPPORTED_MODELS", "load_run", "view_for"]
