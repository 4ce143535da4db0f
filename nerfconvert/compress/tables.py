"""The compression methods' way to a family's tables: each view declares its ``CompressionTables``
(``nerfconvert.views.tables``, defined next to the view in ``views/<family>.py``) under the
``"vq_tables"`` capability, and vq-compression and entropy-compression ask the view registry for it
here, never for a family by name (neither method imports the other).
"""

from __future__ import annotations

from typing import Dict, Iterable, Optional, Tuple, Type

import torch
from torch import Tensor

from nerfstudio.cameras.rays import RayBundle
from nerfstudio.models.base_model import Model

from nerfconvert import NerfconvertError
from nerfconvert.views.registry import companion_class, companions, student_views, view_class_for
from nerfconvert.views.tables import VQ_TABLES, CompressionTables, Table

FEATURE_PLANES = "feature_planes"
"""The view capability entropy-compression needs: feature planes an image codec can code."""

__all__ = ["FEATURE_PLANES", "VQ_TABLES", "CompressionTables", "Table", "accumulate_importance", "feature_planes_needed",
           "finetune_optimizers", "has_feature_planes", "vq_tables_class_for", "vq_tables_for", "vq_tables_named"]


# ---- the view registry's vq tables ---------------------------------------------------------------------
def _supported() -> str:
    unique = list(dict.fromkeys(companions(VQ_TABLES).values()))
    return ", ".join(f"{c.teacher_method} ({c.name})" for c in unique)


def vq_tables_class_for(model_class: type) -> Type[CompressionTables]:
    """The ``CompressionTables`` the view of ``model_class`` registers; a one-line error naming the supported
    methods where it has none."""
    family_cls = companion_class(model_class, VQ_TABLES)
    if family_cls is None:
        raise NerfconvertError(
            f"vq-compression cannot compress a {model_class.__name__} teacher: it quantises grids, and supports "
            f"{_supported()}. Pass the config.yml of a run of one of those methods."
        )
    return family_cls


def vq_tables_for(model: Model, quantizer: Optional[str] = None) -> CompressionTables:
    """The vq tables of a model (its view's ``"vq_tables"`` companion), quantised with ``quantizer``
    (None: the family's default)."""
    return vq_tables_class_for(type(model))(model, quantizer)


def vq_tables_named(name: str, having: Optional[str] = None) -> Optional[Type[CompressionTables]]:
    """The ``CompressionTables`` a file's ``architecture["family"]`` names, among those the registered views
    offer (``having``: whose view also has that capability, e.g. ``"feature_planes"``)."""
    return next((c for c in companions(VQ_TABLES, having).values() if c.name == name), None)


@torch.no_grad()
def accumulate_importance(family: CompressionTables, ray_bundles: Iterable[RayBundle]) -> Dict[str, Tensor]:
    """Eq. 4 summed over all given rays (one backward pass of the probe per batch)."""
    was_training = family.model.training
    family.model.eval()
    importance: Dict[str, Tensor] = {}
    try:
        for bundle in ray_bundles:
            family.accumulate_importance(bundle, importance)
    finally:
        family.model.train(was_training)
    return importance


# ---- feature planes (what entropy-compression codes) ------------------------------------------------------
def has_feature_planes(model_class: type) -> bool:
    """Whether ``model_class`` is served by a view with feature planes."""
    try:
        return view_class_for(model_class).has(FEATURE_PLANES)
    except NerfconvertError:
        return False


def feature_plane_students() -> Tuple[str, ...]:
    """The pvd-al students whose views have feature planes (registry order)."""
    return tuple(name for name, view in student_views().items() if view.has(FEATURE_PLANES))


def feature_planes_needed() -> str:
    """The one-line error for a run without feature planes, naming the students that have them."""
    names = feature_plane_students()
    if not names:
        return "entropy-compression needs a run whose model has feature planes, and no registered family has them"
    return f"entropy-compression needs a {' or '.join(names)} run; convert it first with pvd-al --student {names[0]}"


def finetune_optimizers(max_steps: int) -> Dict[str, dict]:
    """vq-compression's optimizer groups (``<family>_<param group>``) that the registered families declare
    (``CompressionTables.finetune_lr``), each decaying over ``max_steps``."""
    from nerfconvert.schedules import adam_exponential

    out = {}
    for family_cls in dict.fromkeys(companions(VQ_TABLES).values()):
        for group, (lr, lr_final) in family_cls.finetune_lr.items():
            out[f"{family_cls.name}_{group}"] = adam_exponential(lr, lr_final, max_steps)
    return out
