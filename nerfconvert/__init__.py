"""nerfconvert: convert and compress trained NeRFs inside nerfstudio."""

__version__ = "0.1.0"


class NerfconvertError(Exception):
    """A user-facing error: the message names the problem and the fix, in one line."""
