"""pvd-al: Progressive Volume Distillation with Active Learning (any architecture -> any other).

Layout: ``cameras`` (pseudo-camera distribution), ``datamanager`` (pseudo-camera rays, hard
poses), ``losses`` (Eq. 6-8, L_reg, hard points), ``active`` (hard-pose and hard-ray pools),
``pipeline`` (teacher, student, stages), ``trainer`` (flags, student export), ``export``.
"""

# The students' defaults are the stock methods' configs (nerfconvert.views.stock). Load nerfstudio's
# method table, and with it the plugin discovery that imports this package's entry point, before
# any module here: discovery then never starts from inside one of our half-imported modules. It
# installs no patches (a library import; nerfconvert.compat).
from nerfconvert import compat as _compat  # noqa: E402

with _compat.table_without_patches():
    import nerfstudio.configs.method_configs  # noqa: E402,F401
