"""nerfstudio method specifications registered by nerfconvert (entry point group
``nerfstudio.method_configs``). This package is where our patches of nerfstudio and torch are
installed (``nerfconvert.compat``, its ledger): nerfstudio's plugin discovery imports it in every
``ns-*`` command. The ``nerfconvert`` command installs them too; library modules never do.

nerfstudio's method table is loaded first: imported directly (``from method_configs.pvd_al import
pvd_al``), an entry point would otherwise start the discovery from inside itself, half-imported.
"""

import nerfstudio.configs.method_configs  # noqa: F401

from nerfconvert import compat as _compat

_compat.install_for_entry_point()  # not when a library import loads the table
