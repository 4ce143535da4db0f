"""``nerfconvert demo`` end to end at toy size: scene -> teacher (ns-train) -> convert -> compress ->
picture and table. The real size and its timing are in the README (benchmarked, not timed here)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image


@pytest.mark.slow
def test_demo_converts_compresses_and_draws_the_picture(tmp_path):
    from nerfconvert.demo import run_demo

    picture = run_demo(tmp_path, width=24, height=18, num_frames=20, teacher_steps=4, to="tensorf", compress="vq",
                       steps=4, compress_steps=2, num_rays_per_batch=64, teacher_rays_per_batch=64, views=2)
    summary = json.loads((tmp_path / "demo_summary.json").read_text())
    assert [row["role"] for row in summary["rows"]] == ["teacher", "student", "compressed"]
    assert summary["rows"][2]["ncz"] and summary["rows"][2]["size_bytes"] > 0
    image = np.asarray(Image.open(picture))
    # four columns (ground truth | teacher | student | compressed) of 24x18 at 3x, one row per eval view
    # (20 frames: nerfstudio-data holds out 2), plus the caption band
    assert len(summary["eval_views"]) == 2
    assert image.shape[1] == 4 * (24 * 3 + 4)
    assert image.shape[0] > 2 * (18 * 3 + 4)
    assert image.std() > 5  # real content, not one flat colour
