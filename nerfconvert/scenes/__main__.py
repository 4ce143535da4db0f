"""Regenerate the committed scene assets: ``python -m nerfconvert.scenes [assets/scenes]``.

Writes ``tiny/`` (the 32x32 seed-0 scene the tests also generate) and ``preview.png``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from nerfconvert.scenes.generate import generate_object_scene, render_preview


def main(argv: list) -> int:
    root = Path(argv[0]) if argv else Path("assets/scenes")
    start = time.perf_counter()
    tiny = generate_object_scene(root / "tiny", seed=0, resolution=32, num_train=8, num_val=2, num_test=2)
    preview = render_preview(root / "preview.png", seed=0)
    print(f"wrote {tiny} and {preview} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
