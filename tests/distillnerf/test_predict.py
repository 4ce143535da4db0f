"""``nerfconvert distillnerf-predict``: one frame -> a run that stock ns-viewer serves and
ns-export pointcloud exports; clear errors for frames the model cannot take."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from nerfconvert import NerfconvertError

from processes import ns_export_pointcloud


def test_predicted_run_opens_in_ns_viewer_and_exports_a_point_cloud(distillnerf_prediction, stock_viewer_page, tmp_path):
    stock_viewer_page(distillnerf_prediction, while_serving=lambda: ns_export_pointcloud(
        distillnerf_prediction, tmp_path, 500, "--num-rays-per-batch", "1024"))


def test_predicted_scene_renders_the_frame(distillnerf_prediction):
    """Reloaded with nerfstudio's eval_setup, the run renders the frame's cameras (decoder path)
    and rays (point-cloud path), with the voxels from the checkpoint."""
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, _, _ = eval_setup(distillnerf_prediction, test_mode="test")
    model = pipeline.model
    assert model.fine_keys.numel() > 0 and model.coarse_keys.numel() > 0
    cameras = pipeline.datamanager.train_dataset.cameras
    assert cameras.shape[0] == 6
    out = model.get_outputs_for_camera(cameras[0:1])
    assert out["rgb"].shape == (36, 64, 3) and out["depth"].shape == (36, 64, 1)
    metrics = pipeline.get_average_eval_image_metrics()
    # against what a model that learned nothing draws, a mid-grey picture of the same views (its
    # outputs' sigmoid at 0). Measured: 14.95-15.92 dB over four sessions of 2026-12-07, 13.68 in the
    # full suite of 2026-12-08 after the novel-view changes, against grey's 14.11 (training is not
    # bit-reproducible). This tiny model does not beat grey reliably (the distillnerf issue tracks
    # quality); the floor, 1.5 dB under grey, catches a broken render (black or noise: 5-8 dB)
    dataset = pipeline.datamanager.eval_dataset
    grey = [float(-10 * torch.log10(((dataset[i]["image"][..., :3] - 0.5) ** 2).mean())) for i in range(len(dataset))]
    assert metrics["psnr"] > sum(grey) / len(grey) - 1.5, (metrics["psnr"], grey)


def _copy_frame(src: Path, dst: Path, edit) -> Path:
    shutil.copytree(src, dst)
    meta = json.loads((dst / "transforms.json").read_text())
    edit(meta)
    (dst / "transforms.json").write_text(json.dumps(meta))
    return dst


def test_predict_errors(distillnerf_run, distillnerf_scenes, tmp_path):
    from nerfconvert.distillnerf.predict import predict

    frame = distillnerf_scenes / "scene-000" / "t001"
    five = _copy_frame(frame, tmp_path / "five" / "t001", lambda m: m["frames"].pop())
    with pytest.raises(NerfconvertError, match="5 cameras but this model was trained with 6"):
        predict(distillnerf_run, five, tmp_path / "out")

    def lift(meta):  # every camera 30 m up: outside the +-6.4 m inner region
        for f in meta["frames"]:
            f["transform_matrix"][2][3] += 30.0

    high = _copy_frame(frame, tmp_path / "high" / "t001", lift)
    with pytest.raises(NerfconvertError, match="outside the parameterized space's inner region"):
        predict(distillnerf_run, high, tmp_path / "out")
    with pytest.raises(NerfconvertError, match="no frame at"):
        predict(distillnerf_run, distillnerf_scenes / "scene-000" / "t999", tmp_path / "out")
    with pytest.raises(NerfconvertError, match="not a trained run"):
        predict(tmp_path, frame, tmp_path / "out")
