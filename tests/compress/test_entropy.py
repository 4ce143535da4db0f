"""entropy-compression (ECTensoRF): the pieces (decoder, masked entropy model, exact bitstream,
importance weights, Bjontegaard), and ``ns-train entropy-compression`` end to end on a tiny stock
tensorf run and on a tensorf student of pvd-al, with stock tools and bad input."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
from processes import bin_
import torch

from nerfconvert import NerfconvertError
from nerfconvert.compress.entropy.bjontegaard import bd_psnr, bd_rate
from nerfconvert.compress.entropy.coder import (
    MaskedEntropyModel,
    PlaneDecoder,
    gumbel_temperature,
    importance_weights,
    latent_size,
)

TENSORF_NEEDED = "entropy-compression needs a tensorf run; convert it first with pvd-al --student tensorf"


# ---- pieces ------------------------------------------------------------------------------------------
def test_bjontegaard_hand_computed():
    rates = [1.0, 2.0, 4.0, 8.0]
    psnr = [30.0, 32.0, 34.0, 36.0]  # PSNR = 30 + 2 log2(rate): a line in log-rate
    # the same curve 1 dB higher: +1 dB at equal rate; at equal PSNR the rate is 2^(-1/2) times: -29.29 %
    assert bd_psnr(rates, psnr, rates, [p + 1 for p in psnr]) == pytest.approx(1.0, abs=1e-9)
    assert bd_rate(rates, psnr, rates, [p + 1 for p in psnr]) == pytest.approx((2 ** -0.5 - 1) * 100, abs=1e-6)
    # half the rate for the same PSNR: -50 %, and +2 dB (one octave of rate)
    half = [r / 2 for r in rates]
    assert bd_rate(rates, psnr, half, psnr) == pytest.approx(-50.0, abs=1e-6)
    assert bd_psnr(rates, psnr, half, psnr) == pytest.approx(2.0, abs=1e-9)
    # symmetric: anchor and test swapped
    assert bd_rate(half, psnr, rates, psnr) == pytest.approx(100.0, abs=1e-6)
    with pytest.raises(ValueError):
        bd_psnr([1, 2], [30, 31], [10, 20], [30, 31])
    # a repeated point (same file from two settings) counts once, and one distinct point is no curve
    assert bd_psnr(rates + [8.0], psnr + [36.0], half, psnr) == pytest.approx(2.0, abs=1e-9)
    with pytest.raises(ValueError):
        bd_psnr([1, 1], [30, 30], rates, psnr)


def test_bjontegaard_pchip_agrees_on_lines_and_does_not_overshoot_a_saturating_curve():
    rates = [1.0, 2.0, 4.0, 8.0]
    psnr = [30.0, 32.0, 34.0, 36.0]
    half = [r / 2 for r in rates]
    assert bd_rate(rates, psnr, half, psnr, interpolation="pchip") == pytest.approx(-50.0, abs=1e-6)
    assert bd_psnr(rates, psnr, half, psnr, interpolation="pchip") == pytest.approx(2.0, abs=1e-9)
    # an anchor that saturates (the last two points 0.08 dB apart) and a test curve that lies above it
    # everywhere: one polynomial through the anchor overshoots between its points, and its BD-rate then
    # disagrees in sign with its BD-PSNR; the piecewise fit agrees with both
    anchor_rate, anchor_psnr = [0.475, 0.659, 0.858], [31.49, 32.10, 32.18]
    test_rate, test_psnr = [0.478, 0.493, 0.508], [31.72, 31.80, 31.91]
    assert bd_psnr(anchor_rate, anchor_psnr, test_rate, test_psnr, interpolation="pchip") > 0
    assert bd_rate(anchor_rate, anchor_psnr, test_rate, test_psnr, interpolation="pchip") < 0
    assert bd_rate(anchor_rate, anchor_psnr, test_rate, test_psnr) > 0  # the polynomial's overshoot
    with pytest.raises(ValueError):
        bd_rate(rates, psnr, half, psnr, interpolation="spline")


def test_decoder_upsamples_x4_and_crops():
    assert latent_size(128) == 32 and latent_size(300) == 75 and latent_size(150) == 38
    dec = PlaneDecoder(8, 4, 5)
    out = dec(torch.randn(3, 8, 38, 38), (150, 150))
    assert out.shape == (3, 5, 150, 150)
    assert [m.stride for m in (dec.up1, dec.up2)] == [(2, 2), (2, 2)] and dec.up1.kernel_size == (3, 3)


def test_importance_weights_log_normalised():
    imp = torch.zeros(3, 4, 4)
    imp[:, 0, 0] = 100.0
    imp[:, 1, 1] = 1.0
    w = importance_weights(imp, eps=0.01)
    assert w.shape == (3, 4, 4) and float(w.min()) == 0.0 and float(w.max()) == pytest.approx(1.0)
    expected = (math.log(1.01) - math.log(0.01)) / (math.log(100.01) - math.log(0.01))  # Eq. 5
    assert float(w[0, 1, 1]) == pytest.approx(expected, rel=1e-5)


def test_gumbel_temperature_anneals_10_to_0_1():
    assert gumbel_temperature(0, 100) == pytest.approx(10.0)
    assert gumbel_temperature(99, 100) == pytest.approx(0.1)
    assert gumbel_temperature(50, 101) == pytest.approx(1.0)


def test_masked_locations_cost_nothing_and_decode_to_zero():
    torch.manual_seed(0)
    model = MaskedEntropyModel(4, (3, 5, 5))
    with torch.no_grad():
        model.mask_logits[:, 1, :, :2] = -5.0  # two columns masked out (M = 0)
    z = torch.randn(3, 4, 5, 5) * 3
    state = model.quantized(z)
    assert not state.mask[:, :, :, :2].any() and state.mask[:, :, :, 2:].all()
    assert (state.values[:, :, :, :2] == 0).all()
    full = MaskedEntropyModel(4, (3, 5, 5), masked=False)
    full.load_state_dict(model.state_dict())
    assert float(state.bits) < float(full.quantized(z).bits)
    # training: the straight-through mask is exactly 0/1 and the rate gets mask gradients
    z_hat, bits = model(z.requires_grad_(), tau=1.0)
    bits.backward()
    assert model.mask_logits.grad is not None and model.mask_logits.grad.abs().sum() > 0


def test_bitstream_decodes_to_exactly_the_quantized_latents():
    from nerfconvert.compress.entropy import codec

    torch.manual_seed(1)
    model = MaskedEntropyModel(6, (3, 8, 8))
    with torch.no_grad():
        model.mask_logits[:, 1] = torch.randn(3, 8, 8) * 3
    z = torch.randn(3, 6, 8, 8) * torch.tensor([0.1, 1, 3, 10, 30, 0.0]).view(1, 6, 1, 1)
    z[0, :, 0, 0] = 500.0  # far outside the CDF range: coded through CompressAI's overflow path
    model.bottleneck.update(force=True)
    bitstream, values, mask, bits = codec.encode_latents(model, z)
    decoded = codec.decode_latents(model.bottleneck, bitstream, mask[:, 0], 6)
    assert torch.equal(decoded, values)
    assert torch.equal(decoded, model.quantize(z) * mask)
    assert bits > 0 and len(bitstream) > 0


# ---- end to end ------------------------------------------------------------------------------------
def _teacher_dir(entropy_run) -> Path:
    """The run directory of the tensorf teacher of ``entropy_run`` (from its config)."""
    from nerfconvert.views.registry import read_run_config

    _, config = read_run_config(entropy_run("tensorf"))
    return Path(config.pipeline.teacher_ckpt).parent
def render_camera(config_path: Path, index: int = 0) -> torch.Tensor:
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, _, _ = eval_setup(config_path, test_mode="test")
    camera = pipeline.datamanager.eval_dataset.cameras[index : index + 1].to(pipeline.device)
    with torch.no_grad():
        return pipeline.model.get_outputs_for_camera(camera)["rgb"].cpu()


@pytest.mark.slow
def test_entropy_compression_end_to_end(entropy_run, object_scene, tmp_path):
    from nerfconvert.compress.cli import decompress
    from nerfconvert.compress.container import read_ncz
    from nerfconvert.compress.entropy import codec

    config_path = entropy_run("tensorf")
    run_dir = config_path.parent
    ncz_path = run_dir / "scene.ncz"
    ncz = read_ncz(ncz_path)
    arch = ncz.architecture
    assert ncz.method == "entropy-compression" and arch["preset"] == "high"
    assert arch["latent_channels"] == 192 and arch["hidden_channels"] == 96 and arch["plane_channels"] == 64
    r = arch["plane_resolution"][0]
    assert arch["latent_shape"] == [3, 192, latent_size(r), latent_size(r)]
    assert {"latents/bitstream", "latents/mask", "entropy/pmf_counts", "decoder/up1.weight"} <= set(ncz.sections)
    assert arch["decoder_bits"] == 8 and np.dtype(ncz.sections["decoder/up1.weight"].dtype) == np.int8  # int8 codes
    assert np.dtype(ncz.sections["decoder/up1.weight.scale"].dtype) == np.float32
    report = json.loads((run_dir / "entropy_report.json").read_text())
    assert report["ncz_bytes"] == ncz_path.stat().st_size
    assert report["bitstream_bytes"] == len(ncz.section("latents/bitstream").data)
    assert report["estimated_bitstream_bytes"] > 0 and "rate_mismatch" in report and report["decode_seconds"] > 0
    assert report["max_pixel_diff_decoded_vs_in_memory"] == 0.0  # in-memory model == decoded file
    assert report["plane_fit_iterations"] == min(300, report["steps"])  # planes fitted first, sized by the run

    # the renderer outside the planes (lines, basis, MLP) was fine-tuned with the latents and is stored at fp16
    teacher_state = torch.load(sorted((_teacher_dir(entropy_run) / "nerfstudio_models").glob("*.ckpt"))[-1],
                               map_location="cpu", weights_only=False)["pipeline"]
    stored = codec.stored_state(ncz)
    for key in ("field.mlp_head.layers.0.weight", "field.density_encoding.line_coef"):
        teacher_value = teacher_state["_model." + key].half().float()
        assert stored[key].shape == teacher_value.shape and not torch.equal(stored[key].float(), teacher_value), key

    # the run's checkpoint is the file: loading the run, decoding the file and a decompressed run agree exactly
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, _, _ = eval_setup(config_path, test_mode="test")
    camera = pipeline.datamanager.eval_dataset.cameras[0:1]
    with torch.no_grad():
        from_run = pipeline.model.get_outputs_for_camera(camera.to(pipeline.device))["rgb"].cpu()
    assert torch.isfinite(from_run).all() and from_run.shape[-1] == 3
    model, _ = codec.decode(ncz)
    with torch.no_grad():
        assert torch.equal(model.get_outputs_for_camera(camera)["rgb"], from_run)
    decompressed = decompress(ncz_path, tmp_path / "outputs", data=object_scene, timestamp="rt")
    assert torch.equal(render_camera(decompressed), from_run)

    result = subprocess.run([bin_("nerfconvert"), "inspect", str(ncz_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "entropy-compression" in result.stdout and "latents/bitstream" in result.stdout


@pytest.mark.slow
def test_entropy_run_opens_in_stock_viewer_and_export(entropy_run, stock_viewer_page, tmp_path):
    config_path = entropy_run("tensorf")
    from processes import ns_export_pointcloud

    # ns-export runs while ns-viewer starts (the two start-ups overlap); 500 points from one batch of 1024 rays
    stock_viewer_page(config_path, while_serving=lambda: ns_export_pointcloud(config_path, tmp_path, 500, "--num-rays-per-batch", "1024"))


@pytest.mark.slow
def test_entropy_compression_of_a_pvd_al_tensorf_student(trained_run, object_scene, make_entropy_config, tmp_path):
    from nerfstudio.scripts import train

    from nerfconvert.compress.container import read_ncz
    from nerfconvert.distill.method import make_pvd_config

    pvd = make_pvd_config(trained_run("tensorf"), "tensorf", tmp_path / "pvd", max_num_iterations=2, stage_steps=(1, 1),
                          num_rays=48)
    pvd.timestamp = "pvd"
    pvd.pipeline.datamanager.steps_per_epoch = 1
    pvd.pipeline.datamanager.poses_per_epoch = 10
    pvd.pipeline.active_learning.ray_pool_size = 64
    pvd.pipeline.model.eval_num_rays_per_chunk = 256
    train.main(pvd)
    students = sorted((tmp_path / "pvd").glob("*/tensorf/*/config.yml"))
    assert len(students) == 1
    config = make_entropy_config(students[0], object_scene, tmp_path / "ec", steps=1)
    train.main(config)
    ncz = read_ncz(config.get_base_dir() / "scene.ncz")
    assert ncz.method == "entropy-compression" and ncz.architecture["model_class"] == "TensoRFModel"


def test_non_tensorf_teacher_and_missing_teacher(trained_run, object_scene, make_entropy_config, tmp_path):
    from nerfstudio.scripts import train

    entropy_config = make_entropy_config

    with pytest.raises(SystemExit) as info:
        train.main(entropy_config(trained_run("plenoxels"), object_scene, tmp_path))
    assert str(info.value) == f"error: {TENSORF_NEEDED}"
    with pytest.raises(SystemExit) as info:
        train.main(entropy_config(None, object_scene, tmp_path))
    assert "--teacher-ckpt" in str(info.value)


def test_bad_files_are_rejected(entropy_run, tmp_path):
    from nerfconvert.compress import container
    from nerfconvert.compress.cli import decompress
    from nerfconvert.compress.entropy import codec
    from nerfconvert.compress.entropy.model import EntropyCompressionModel, EntropyCompressionModelConfig
    from nerfstudio.data.scene_box import SceneBox

    ncz_path = entropy_run("tensorf").parent / "scene.ncz"
    data = bytearray(ncz_path.read_bytes())
    bad = tmp_path / "bad.ncz"
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(NerfconvertError, match="corrupted"):
        decompress(bad, tmp_path / "o")
    truncated = tmp_path / "short.ncz"
    truncated.write_bytes(ncz_path.read_bytes()[:-100])
    with pytest.raises(NerfconvertError, match="truncated"):
        decompress(truncated, tmp_path / "o")
    # a well-formed file whose sections do not agree (hand-made): a clear error, not a crash
    ncz = container.read_ncz(ncz_path)
    arch = dict(ncz.architecture, coded_locations=ncz.architecture["coded_locations"] + 1)
    forged = container.to_bytes(ncz.method, arch, {k: container.Section(s.data, s.dtype, s.shape) for k, s in ncz.sections.items()},
                                 ncz.metadata)
    with pytest.raises(NerfconvertError, match="corrupted"):
        codec.decode(container.from_bytes(forged))
    model = EntropyCompressionModel(EntropyCompressionModelConfig(), scene_box=SceneBox(torch.ones(2, 3)), num_train_data=1)
    with pytest.raises(NerfconvertError, match="no compressed scene"):
        model.load_state_dict({"field.density_encoding.plane_coef": torch.zeros(1)})
    vq_like = container.to_bytes("vq-compression", {}, {"x": np.zeros(3, np.uint8)})
    with pytest.raises(NerfconvertError, match="not entropy-compression"):
        codec.decode(container.from_bytes(vq_like))


def test_benchmark_report_judges_the_ratio_point(tmp_path):
    from entropy_bench import decoder_bytes, entropy_report

    assert decoder_bytes(384, 192, 64) == 2 * (384 * 192 * 9 + 192 + 192 * 64 * 9 + 64)  # fp16 weights + biases

    def row(ratio, psnr):
        return {"curve": "entropy-L", "preset": "low", "lmbda": 1e-3, "after_mb": 50.0 / ratio, "ratio": ratio,
                "psnr_after": psnr, "ssim_after": 0.9, "seconds": 1.0, "bitstream_bytes": 1000, "estimated_bitstream_bytes": 1001.0,
                "rate_mismatch": 0.001, "coded_fraction": 0.5, "decode_seconds": 0.1, "decoder_mb": 1.55}

    big = {"psnr": 26.0, "ssim": 0.9, "mb": 50.0, "ckpt_zip_mb": 150.0, "plane_shape": [3, 48, 256, 256]}
    text = entropy_report([row(20.0, 25.8)], big, "cmd", tmp_path, {}, "t1")
    assert "ratio 20.0x (target >= 15x), PSNR drop +0.20 dB (target <= 0.3 dB): **PASS**" in text
    text = entropy_report([row(20.0, 25.5)], big, "cmd", tmp_path, {}, "t2")
    assert "PSNR drop +0.50 dB" in text and "**FAIL**" in text and "Out of reach" not in text
    small = dict(big, mb=3.1)
    text = entropy_report([dict(row(2.0, 26.5), after_mb=1.55)], small, "cmd", tmp_path, {}, "t3")
    assert "**FAIL**" in text and "Out of reach for this teacher: the L decoder alone is 1.55 MB" in text
    assert (tmp_path / "entropy_t3.png").exists()


def test_benchmark_merges_the_parts_of_one_sweep(tmp_path):
    """Parts of a sweep run as parallel processes are merged into one report; a part on another
    teacher, or a missing part, is refused with the fix."""
    from entropy_bench import entropy_report, merged_rows

    teacher = {"config": str(tmp_path / "t" / "config.yml"), "psnr": 26.0, "ssim": 0.9, "mb": 12.0, "ckpt_zip_mb": 40.0}

    def row(curve, mb, psnr, **kw):
        return {"curve": curve, "lmbda": kw.get("lmbda"), "codebook_size": kw.get("k"), "after_mb": mb, "ratio": 12.0 / mb,
                "psnr_after": psnr, "ssim_after": 0.9, "seconds": 1.0}

    vq = [row("vq", 1.0, 25.0, k=256), row("vq", 1.5, 25.6, k=1024), row("vq", 2.0, 26.0, k=4096)]
    ent = [row("entropy-L", 0.9, 25.3, lmbda=1e-2), row("entropy-L", 1.3, 25.9, lmbda=1e-3), row("entropy-L", 1.8, 26.3, lmbda=1e-4)]
    entropy_report(vq, teacher, "cmd vq", tmp_path, {"vq_steps": 1000}, "part_vq")
    entropy_report(ent, teacher, "cmd L", tmp_path, {"steps": 3000}, "part_l")
    rows, commands = merged_rows(tmp_path, ["part_vq", "part_l"], Path(teacher["config"]))
    assert commands == {"part_vq": "cmd vq", "part_l": "cmd L"}
    assert len(rows) == 6
    text = entropy_report(rows, teacher, "cmd merge", tmp_path, {"merged": {"part_vq": "cmd vq", "part_l": "cmd L"}}, "all")
    assert "`cmd vq`; `cmd L`" in text
    bd = json.loads((tmp_path / "entropy_all.json").read_text())["bd"]["entropy-L"]
    assert bd["bd_rate_percent"] < 0 and bd["bd_psnr_db"] > 0  # entropy is left of / above vq here
    assert bd["rate_overlap_mb"] == [1.0, 1.8] and bd["psnr_overlap_db"] == [25.3, 26.0]
    assert "(over PSNR 25.30-26.00 dB)" in text and "(over 1.000-1.800 MB)" in text
    # a sliver of overlap is not a BD figure: kept in the JSON, n/a in the report
    flat = [row("entropy-H", 1.0, 25.30, lmbda=1e-2), row("entropy-H", 1.05, 25.32, lmbda=1e-3)]
    narrow = entropy_report(vq + flat, teacher, "cmd", tmp_path, {}, "narrow")
    bd = json.loads((tmp_path / "entropy_narrow.json").read_text())["bd"]["entropy-H"]
    assert bd["bd_rate_percent"] is None and bd["bd_rate_percent_narrow"] is not None
    assert bd["bd_psnr_db"] is None and bd["bd_psnr_db_narrow"] is not None  # 1.0-1.05 MB: 5% apart
    assert "the curves share only 0.020 dB of PSNR" in narrow and "share only 1.000-1.050 MB, under 10% apart" in narrow
    with pytest.raises(SystemExit, match="same --teacher"):
        merged_rows(tmp_path, ["part_vq"], tmp_path / "other" / "config.yml")
    only_vq, commands = merged_rows(tmp_path, ["part_vq:vq", "part_l"], Path(teacher["config"]))
    assert commands["part_vq:vq"] == "cmd vq (its vq rows)"
    assert only_vq == rows
    assert merged_rows(tmp_path, ["part_l:entropy-L"], Path(teacher["config"]))[0] == [dict(r, steps=3000) for r in ent]
    assert {r["steps"] for r in rows if r["curve"] == "vq"} == {1000}  # rows without steps take their part's
    assert "| entropy-L | 0.01 | 3000 | 0.900 |" in text
    with pytest.raises(SystemExit, match="no rows of the curve 'entropy-H'"):
        merged_rows(tmp_path, ["part_l:entropy-H"], Path(teacher["config"]))
    with pytest.raises(SystemExit, match="run that part first with --tag nope"):
        merged_rows(tmp_path, ["nope"], Path(teacher["config"]))


def test_benchmark_modes_parse():
    """Every recorded mode is a valid command line; bd spans vq down to K = 16 and both presets."""
    from entropy_bench import MODES, build_parser

    for mode, argv in MODES.items():
        build_parser().parse_args(argv)
    bd = build_parser().parse_args(MODES["bd"])
    assert bd.teacher_resolution == 128 and bd.vq_sizes[0] == 16 and bd.vq_sizes[-1] == 16384
    assert bd.lambdas == bd.high_lambdas == [1e-2, 1e-3, 1e-4] and bd.ablation_lambdas == []
