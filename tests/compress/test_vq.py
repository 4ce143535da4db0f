"""VQRF: the pieces (quantiles, codebook, packing) and ``ns-train vq-compression`` end to end on
tiny plenoxels, tensorf and nerfacto teachers, with the decompress round trip and bad input."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from processes import bin_
import torch

from nerfconvert import NerfconvertError
from nerfconvert.compress.quant import dequantize_uint8, pack_indices, quantize_uint8, unpack_indices
from nerfconvert.compress.vq.codebook import cumulative_mass_masks, fit_codebook, weighted_code_means

FAMILY_OF = {"plenoxels": "voxel", "tensorf": "vm", "nerfacto": "hash"}


# ---- pieces ---------------------------------------------------------------------------------------
def test_cumulative_mass_quantiles():
    imp = torch.tensor([0.0, 0.0005, 0.0005, 0.099, 0.3, 0.6])  # total 1.0
    alive, kept = cumulative_mass_masks(imp, prune_quantile=0.001, keep_quantile=0.6)
    # the two smallest non-zero scores hold exactly 0.001 of the mass: pruned with the zero one
    assert alive.tolist() == [False, False, False, True, True, True]
    # the top voxel alone holds 0.6
    assert kept.tolist() == [False, False, False, False, False, True]
    _, kept_more = cumulative_mass_masks(imp, 0.001, 0.9)
    assert kept_more.tolist() == [False, False, False, False, True, True]
    _, kept_none = cumulative_mass_masks(imp, 0.001, 0.0)
    assert not kept_none.any()


def test_weighted_codebook_follows_importance():
    g = torch.Generator().manual_seed(0)
    # two clusters; only the important one should get codes close to its points
    a = torch.randn(5000, 4, generator=g) * 0.01 + 1.0
    b = torch.randn(5000, 4, generator=g) * 0.01 - 1.0
    feats = torch.cat([a, b])
    imp = torch.cat([torch.ones(5000), torch.full((5000,), 1e-6)])
    fit = fit_codebook(feats, imp, num_codes=8, iterations=30, batch_size=2000, generator=g)
    assert fit.codebook.shape == (8, 4) and fit.assignment.shape == (10000,)
    near_a = (fit.codebook - 1.0).norm(dim=1) < 0.1
    assert int(near_a.sum()) >= 6  # most codes serve the important cluster
    err_a = (fit.codebook[fit.assignment[:5000]] - a).norm(dim=1).mean()
    assert err_a < 0.05
    # fewer voxels than codes: exact
    small = fit_codebook(feats[:5], imp[:5], num_codes=8)
    assert torch.equal(small.codebook[small.assignment], feats[:5])


def test_code_sync_is_weighted_mean():
    feats = torch.tensor([[0.0], [1.0], [10.0]])
    out = weighted_code_means(feats, torch.tensor([1.0, 3.0, 1.0]), torch.tensor([0, 0, 1]), torch.zeros(3, 1))
    assert torch.allclose(out[:, 0], torch.tensor([0.75, 10.0, 0.0]), atol=1e-5)


@pytest.mark.parametrize("bits", [1, 5, 12, 13])
def test_index_packing(bits):
    idx = np.random.default_rng(bits).integers(0, 1 << bits, size=1001)
    data = pack_indices(idx, bits)
    assert len(data) == (1001 * bits + 7) // 8
    np.testing.assert_array_equal(unpack_indices(data, bits, 1001), idx)
    with pytest.raises(ValueError):
        pack_indices(np.array([1 << bits]), bits)


def test_uint8_quantisation_error_is_half_a_step():
    x = torch.randn(1000, 3) * torch.tensor([1.0, 10.0, 0.1])
    codes, rng = quantize_uint8(x)
    back = dequantize_uint8(codes, rng)
    assert codes.dtype == np.uint8
    assert ((back - x).abs() <= torch.from_numpy(rng[1]) * 0.5 + 1e-5).all()


# ---- end to end ------------------------------------------------------------------------------------
def render_camera(config_path: Path, index: int = 0) -> torch.Tensor:
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, _, _ = eval_setup(config_path, test_mode="test")
    camera = pipeline.datamanager.eval_dataset.cameras[index : index + 1].to(pipeline.device)
    with torch.no_grad():
        return pipeline.model.get_outputs_for_camera(camera)["rgb"].cpu()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["plenoxels", "tensorf", "nerfacto"])
def test_vq_compression_end_to_end(vq_run, method, object_scene, tmp_path):
    from nerfconvert.compress.cli import decompress
    from nerfconvert.compress.container import read_ncz
    from nerfconvert.compress.vq import codec

    config_path = vq_run(method)
    run_dir = config_path.parent
    ncz_path = run_dir / "scene.ncz"
    ncz = read_ncz(ncz_path)
    assert ncz.method == "vq-compression" and ncz.architecture["family"] == FAMILY_OF[method]
    tables = ncz.architecture["tables"]
    if method in ("nerfacto", "tensorf"):  # hash tables and VM planes go on a lattice by default (see tables.py)
        assert tables and all(spec["kind"] == "lattice" for spec in tables.values())
        assert ncz.architecture["quantizer"] == "lattice"
    else:
        assert any(spec["kind"] == "vq" and spec["codes"] <= 64 for spec in tables.values())
    report = json.loads((run_dir / "vq_report.json").read_text())
    assert report["ncz_bytes"] == ncz_path.stat().st_size
    assert report["max_pixel_diff_vs_unpacked"] < 0.25  # 8-bit / fp16 post-processing only

    # the run's checkpoint is the file: loading the run, decoding the file and a decompressed run agree exactly
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, _, _ = eval_setup(config_path, test_mode="test")
    camera = pipeline.datamanager.eval_dataset.cameras[0:1]
    with torch.no_grad():
        from_run = pipeline.model.get_outputs_for_camera(camera.to(pipeline.device))["rgb"].cpu()
    assert torch.isfinite(from_run).all() and from_run.shape[-1] == 3
    model, _ = codec.decode(ncz)
    with torch.no_grad():
        from_file = model.get_outputs_for_camera(camera)["rgb"]
    assert torch.equal(from_run, from_file)
    decompressed = decompress(ncz_path, tmp_path / "outputs", data=object_scene, timestamp="rt")
    assert torch.equal(render_camera(decompressed), from_run)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["plenoxels", "tensorf", "nerfacto"])
def test_compressed_run_opens_in_stock_viewer_and_export(vq_run, method, stock_viewer_page, tmp_path):
    config_path = vq_run(method)
    from processes import ns_export_pointcloud

    # ns-export runs while ns-viewer starts (the two start-ups overlap); 500 points from one batch of 1024
    # rays (ns-export's own 32768-ray batch of the nerfacto run is minutes of CPU)
    stock_viewer_page(config_path, while_serving=lambda: ns_export_pointcloud(config_path, tmp_path, 500, "--num-rays-per-batch", "1024"))


def test_cli_inspect_and_bad_file(vq_run, tmp_path):
    ncz_path = vq_run("plenoxels").parent / "scene.ncz"
    result = subprocess.run([bin_("nerfconvert"), "inspect", str(ncz_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "vq-compression" in result.stdout and "t/sh/codebook" in result.stdout and "format version" in result.stdout

    bad = tmp_path / "bad.ncz"
    data = bytearray(ncz_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    for command in (["inspect", str(bad)], ["decompress", str(bad), "--output-dir", str(tmp_path / "o")]):
        result = subprocess.run([bin_("nerfconvert"), *command], capture_output=True, text=True, timeout=300)
        assert result.returncode == 2
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "corrupted" in errors[0], result.stderr[-2000:]
        assert errors[0] == result.stderr.strip().splitlines()[-1]


def test_unsupported_teacher_and_missing_teacher(trained_run, object_scene, make_vq_config, tmp_path):
    from nerfstudio.scripts import train

    vq_config = make_vq_config
    config = vq_config(trained_run("vanilla-nerf"), object_scene, tmp_path)
    with pytest.raises(SystemExit) as info:
        train.main(config)
    message = str(info.value)
    assert message.startswith("error:") and "NeRFModel" in message and "plenoxels" in message

    config = vq_config(None, object_scene, tmp_path)
    with pytest.raises(SystemExit) as info:
        train.main(config)
    assert "--teacher-ckpt" in str(info.value)


def test_checkpoint_of_another_method_is_rejected():
    from nerfconvert.compress.vq.model import VQCompressionModel, VQCompressionModelConfig
    from nerfstudio.data.scene_box import SceneBox

    model = VQCompressionModel(VQCompressionModelConfig(), scene_box=SceneBox(torch.ones(2, 3)), num_train_data=1)
    with pytest.raises(NerfconvertError, match="no compressed scene"):
        model.load_state_dict({"field.density_grid": torch.zeros(1)})
