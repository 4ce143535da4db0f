"""``nerfconvert demo`` end to end at toy size: scene -> teacher (ns-train) -> convert -> compress ->
picture and table. The real size and its timing are in the README (benchmarked, not timed here)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

W, H = 16, 12


@pytest.mark.slow
def test_demo_converts_compresses_and_draws_the_picture(tmp_path, monkeypatch):
    import nerfconvert.convert
    from nerfconvert.demo import run_demo

    # The vq stage's k-means is the demo's largest cost at this size (4096 codes over each of the
    # teacher's six 128^2 planes: minutes on a CPU), then its importance pass: a 64-code book and 1024
    # importance rays, as the session's vq runs use. The demo's own stage settings are applied first
    # (``configured`` records them), so this also checks that they reach the stage.
    real_run_convert, configured = nerfconvert.convert.run_convert, {}

    def run_convert(*args, configure=None, **kwargs):
        def small_codebook(method, config):
            if configure is not None:
                configure(method, config)
            if method == "vq-compression":
                configured["importance_max_rays"] = config.pipeline.model.importance_max_rays
                config.pipeline.model.codebook_size, config.pipeline.model.kmeans_iterations = 64, 10
                config.pipeline.model.importance_max_rays = 1024

        return real_run_convert(*args, configure=small_codebook, **kwargs)

    monkeypatch.setattr(nerfconvert.convert, "run_convert", run_convert)
    picture = run_demo(tmp_path, width=W, height=H, num_frames=20, teacher_steps=4, to="tensorf", compress="vq",
                       steps=4, compress_steps=2, num_rays_per_batch=64, teacher_rays_per_batch=64, views=2)
    assert configured == {"importance_max_rays": 1 << 13}  # the demo's own vq setting reached the stage
    summary = json.loads((tmp_path / "demo_summary.json").read_text())
    assert [row["role"] for row in summary["rows"]] == ["teacher", "student", "compressed"]
    assert summary["rows"][2]["ncz"] and summary["rows"][2]["size_bytes"] > 0
    image = np.asarray(Image.open(picture))
    # four columns (ground truth | teacher | student | compressed) of WxH at 3x, one row per eval view
    # (20 frames: nerfstudio-data holds out 2), plus the caption band
    assert len(summary["eval_views"]) == 2
    assert image.shape[1] == 4 * (W * 3 + 4)
    assert image.shape[0] > 2 * (H * 3 + 4)
    assert image.std() > 5  # real content, not one flat colour
