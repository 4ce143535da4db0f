"""Two-level views (phi1 / phi2) of each architecture family, with what compression quantises in each
(``tables``), ``load_run`` and ``load_pipeline``."""

from nerfconvert.views.base import Decoded, FieldView
from nerfconvert.views.registry import SUPPORTED_MODELS, load_pipeline, load_run, view_for

__all__ = ["Decoded", "FieldView", "SUPPORTED_MODELS", "load_pipeline", "load_run", "view_for"]
