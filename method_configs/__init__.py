"""nerfstudio method specifications registered by nerfconvert (entry point group
``nerfstudio.method_configs``). Importing any of them installs the compatibility shims."""

from nerfconvert import compat as _compat

_compat.install()
