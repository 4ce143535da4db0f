"""The stock methods' own configs, read from nerfstudio's method table, never copied.

A distillation student is the stock model of its method (see ``FieldView.student_model_config``),
so its defaults come from the same ``TrainerConfig`` that ``ns-train <method>`` starts from.

nerfstudio builds its built-in table (``nerfstudio.configs.method_configs.method_configs``) before
it discovers plugins, and nerfconvert's entry points build the pvd-al student subcommands while they
are being discovered. So the table is read from the module as it stands, possibly still loading;
``nerfconvert.distill`` imports the module first (see its ``__init__``) so that discovery never
starts from inside one of our own half-imported modules.
"""

from __future__ import annotations

import copy
import importlib
import sys

from nerfconvert import NerfconvertError

_MODULE = "nerfstudio.configs.method_configs"


def builtin_method_config(name: str):
    """A copy of nerfstudio's built-in ``TrainerConfig`` for method ``name`` (e.g. "nerfacto")."""
    module = sys.modules.get(_MODULE)
    table = getattr(module, "method_configs", None) if module is not None else None
    if table is None or name not in table:
        module = importlib.import_module(_MODULE)
        table = module.method_configs
    if name not in table:
        raise NerfconvertError(f"nerfstudio has no built-in method {name!r}; this nerfstudio version is not supported.")
    return copy.deepcopy(table[name])
