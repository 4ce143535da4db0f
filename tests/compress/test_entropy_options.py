"""entropy-compression's options for smaller files and cheaper steps: the quantisation-aware int8
decoder (``decoder_bits``), the rate estimated on a random subset of latent locations
(``rate_sample_fraction``), and masks started from the importance (``mask_from_importance``).
Small in-process models and files only (fast lane)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nerfconvert import NerfconvertError
from nerfconvert.compress import container, fuzz
from nerfconvert.compress.entropy import codec
from nerfconvert.compress.entropy.coder import (
    MaskedEntropyModel,
    PlaneDecoder,
    dequantize_weight,
    fake_quantize,
    unimportant_blocks,
    weight_scales,
)


# ---- quantisation-aware decoder ---------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [8, 4, 2])
def test_quantized_decoder_is_code_times_scale_per_output_channel(bits):
    torch.manual_seed(0)
    dec = PlaneDecoder(6, 5, 4, bits=bits)
    q = (1 << (bits - 1)) - 1
    stored = dec.quantized_weights()
    assert set(stored) == {"up1.weight", "up2.weight"}
    for name, (codes, scale) in stored.items():
        weight = dict(dec.named_parameters())[name]
        assert codes.dtype == torch.int8 and codes.shape == weight.shape
        assert scale.dtype == torch.float32 and scale.shape == (weight.shape[1],)  # [in, out, k, k]: out is dim 1
        assert int(codes.abs().max()) == q  # each channel's largest weight gets the largest code
        assert torch.equal(dequantize_weight(codes, scale), fake_quantize(weight, weight_scales(weight, bits), bits))

    # what a reader builds from the codes (a plain float decoder) renders bit-exactly as the trained one
    plain = PlaneDecoder(6, 5, 4)
    state = {k: v.clone() for k, v in dec.state_dict().items()}
    state.update({name: dequantize_weight(codes, scale) for name, (codes, scale) in stored.items()})
    plain.load_state_dict(state)
    z = torch.randn(3, 6, 4, 4)
    with torch.no_grad():
        assert torch.equal(dec(z, (15, 15)), plain(z, (15, 15)))

    # straight-through: the float weights get gradients
    dec(z, (15, 15)).pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in dec.parameters())


def test_decoder_bits_outside_the_storage_are_refused():
    for bits in (1, 9, 12, 32):
        with pytest.raises(ValueError):
            PlaneDecoder(4, 4, 4, bits=bits)


def _decoder_of(data: bytes) -> PlaneDecoder:
    return codec.decode_sections(container.from_bytes(data))[1]


def test_int8_decoder_sections_and_old_fp16_files_decode():
    new, old = fuzz.tiny_entropy_file(decoder_bits=8), fuzz.tiny_entropy_file(decoder_bits=16)
    ncz_new, ncz_old = container.from_bytes(new), container.from_bytes(old)
    assert ncz_new.architecture["decoder_bits"] == 8
    assert ncz_new.array("decoder/up1.weight").dtype == np.int8
    assert ncz_new.array("decoder/up1.weight.scale").dtype == np.float32
    assert ncz_new.array("decoder/up1.bias").dtype == np.float32
    assert ncz_old.array("decoder/up1.weight").dtype == np.float16 and "decoder/up1.weight.scale" not in ncz_old.sections
    # a file written before decoder_bits existed: no such key, fp16 sections -> read as before
    arch = dict(ncz_old.architecture)
    del arch["decoder_bits"]
    legacy = container.to_bytes(ncz_old.method, arch, ncz_old.sections, ncz_old.metadata)
    for data in (new, old, legacy):
        model, _ = codec.decode(container.from_bytes(data))
        assert model is not None
    assert torch.equal(_decoder_of(legacy).up1.weight, _decoder_of(old).up1.weight)
    int8_bytes = sum(s.stored_bytes for n, s in ncz_new.sections.items() if n.startswith("decoder/"))
    fp16_bytes = sum(s.stored_bytes for n, s in ncz_old.sections.items() if n.startswith("decoder/"))
    assert int8_bytes < fp16_bytes


def _with_section(data: bytes, name: str, value=None, arch_edit=None, drop: bool = False) -> bytes:
    ncz = container.from_bytes(data)
    sections = dict(ncz.sections)
    if drop:
        del sections[name]
    elif value is not None:
        sections[name] = container.Section.from_array(value)
    arch = dict(ncz.architecture)
    if arch_edit:
        arch.update(arch_edit)
    return container.to_bytes(ncz.method, arch, sections, ncz.metadata)


@pytest.fixture(scope="module")
def int8_file():
    return fuzz.tiny_entropy_file(decoder_bits=8)


def _scale(data, value):
    scale = container.from_bytes(data).array("decoder/up1.weight.scale").copy()
    scale[1] = value
    return scale


@pytest.mark.parametrize("edit, words", [
    (lambda d: _with_section(d, "decoder/up1.weight.scale", _scale(d, np.nan)), "not finite"),
    (lambda d: _with_section(d, "decoder/up1.weight.scale", _scale(d, -1.0)), "outside [0"),
    (lambda d: _with_section(d, "decoder/up1.weight.scale", _scale(d, 1e30)), "outside [0"),
    (lambda d: _with_section(d, "decoder/up1.weight.scale", np.ones(3, np.float32)), "where the architecture implies [8]"),
    (lambda d: _with_section(d, "decoder/up1.weight.scale", np.ones(8, np.float16)), "where the decoder reads float32"),
    (lambda d: _with_section(d, "decoder/up1.weight", np.zeros((4, 8, 3, 3), np.float16)), "where the decoder reads int8"),
    (lambda d: _with_section(d, "decoder/up2.weight", np.zeros((8, 6, 3, 2), np.int8)), "where the architecture implies"),
    (lambda d: _with_section(d, "decoder/up1.bias", np.full(8, np.inf, np.float32)), "not finite"),
    (lambda d: _with_section(d, "decoder/up1.weight.scale", drop=True), "missing"),
    (lambda d: _with_section(d, "decoder/extra", np.ones(2, np.float32)), "unexpected"),
    (lambda d: _with_section(d, "decoder/up1.weight", arch_edit={"decoder_bits": 4}), "codes outside [-7, 7]"),
    (lambda d: _with_section(d, "decoder/up1.weight", arch_edit={"decoder_bits": 12}), "decoder's bits"),
    (lambda d: _with_section(d, "decoder/up1.weight", arch_edit={"decoder_bits": "8"}), "not an integer"),
    (lambda d: _with_section(d, "decoder/up1.weight", arch_edit={"decoder_bits": 16}), "unexpected ['decoder/up1.weight.scale'"),
])
def test_corrupted_decoder_sections_get_the_one_line_error(int8_file, edit, words):
    with pytest.raises(NerfconvertError) as info:
        codec.decode(container.from_bytes(edit(int8_file)))
    message = str(info.value)
    assert words in message and "\n" not in message, message


# ---- rate on a random subset of locations --------------------------------------------------------------------
def _rate_model():
    torch.manual_seed(3)
    model = MaskedEntropyModel(8, (3, 12, 12))
    with torch.no_grad():
        model.mask_logits[:, 1] = torch.randn(3, 12, 12) * 2
    z = torch.randn(3, 8, 12, 12) * torch.linspace(0.5, 6, 8).view(1, 8, 1, 1)
    return model, z


def test_full_fraction_is_the_exact_rate():
    model, z = _rate_model()
    torch.manual_seed(7)
    z_hat, bits = model(z, 0.5, 1.0)
    torch.manual_seed(7)
    _, likelihood = model.bottleneck(z, training=True)
    mask = model.sample_mask(0.5)
    assert torch.equal(bits, ((-torch.log2(likelihood)).sum(dim=1, keepdim=True) * mask).sum())
    torch.manual_seed(7)
    z_hat_default, bits_default = model(z, 0.5)
    assert torch.equal(bits_default, bits) and torch.equal(z_hat_default, z_hat)


def test_subset_rate_is_an_unbiased_estimate_and_the_decoder_sees_every_latent():
    model, z = _rate_model()
    draws = 300
    torch.manual_seed(11)
    with torch.no_grad():
        full = torch.stack([model(z, 0.5, 1.0)[1] for _ in range(draws)])
        sampled = [model(z, 0.5, 0.25) for _ in range(draws)]
    estimate = torch.stack([bits for _, bits in sampled])
    assert abs(float(estimate.mean() / full.mean()) - 1) < 0.03, (float(estimate.mean()), float(full.mean()))
    assert float(estimate.std()) > float(full.std())  # it is a sample (and a different one each step)
    # the decoder input is every rounded latent times the mask, whatever the subset
    z_hat, _ = sampled[0]
    quantized = model.quantize(z)
    nonzero = z_hat != 0
    assert torch.equal(z_hat[nonzero], quantized[nonzero])
    # gradients reach the latents everywhere (decoder path) and the entropy model (subset path)
    torch.manual_seed(1)
    zz = z.clone().requires_grad_(True)
    z_hat, bits = model(zz, 0.5, 0.25)
    (z_hat.pow(2).sum() + bits).backward()
    assert zz.grad is not None and any(p.grad is not None for n, p in model.bottleneck.named_parameters() if n != "quantiles")
    assert model.mask_logits.grad is not None


def test_packed_rate_does_not_depend_on_the_training_fraction():
    model, z = _rate_model()
    state = model.quantized(z)
    assert torch.equal(model.quantized(z).bits, state.bits)  # deterministic, every location


# ---- masks from the importance ---------------------------------------------------------------------------------
def test_unimportant_blocks_are_the_zero_importance_4x4_blocks():
    importance = torch.zeros(3, 10, 10)  # latents 3 x 3 x 3 (the last block row/column cropped to 2)
    importance[0, 0, 0] = 1.0  # block (0, 0)
    importance[1, 9, 9] = 0.5  # block (2, 2), cropped
    importance[2, 5, 6] = 2.0  # block (1, 1)
    blocks = unimportant_blocks(importance, (3, 3))
    expected = torch.ones(3, 3, 3, dtype=torch.bool)
    expected[0, 0, 0] = expected[1, 2, 2] = expected[2, 1, 1] = False
    assert torch.equal(blocks, expected)

    model = MaskedEntropyModel(4, (3, 3, 3), mask_init=2.0, initial_mask=~blocks)
    assert torch.equal(model.hard_mask()[:, 0], ~blocks)
    assert set(model.mask_logits[:, 1].unique().tolist()) == {-2.0, 2.0}
    assert torch.equal(MaskedEntropyModel(4, (3, 3, 3)).hard_mask(), torch.ones(3, 1, 3, 3, dtype=torch.bool))


# ---- the start: weights with a floor, planes fitted before rendering ------------------------------------------
def _started(**options):
    """An entropy-compression model started from a small random tensorf (planes 3 x 6 x 16²)."""
    import copy as copy_

    from nerfstudio.configs.method_configs import all_methods
    from nerfstudio.data.scene_box import SceneBox

    from nerfconvert.compress.entropy.model import EntropyCompressionModelConfig

    torch.manual_seed(0)
    config = copy_.deepcopy(all_methods["tensorf"].pipeline.model)
    config.init_resolution, config.final_resolution = 16, 16
    config.num_den_components, config.num_color_components, config.appearance_dim = 2, 4, 6
    box = SceneBox(aabb=torch.tensor([[-1.0, -1, -1], [1, 1, 1]]))
    teacher = config.setup(scene_box=box, num_train_data=4, metadata={})
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    importance = {f"density_plane{k}": torch.rand(16 * 16) ** 4 * (torch.rand(16 * 16) > 0.5) for k in range(3)}
    model = EntropyCompressionModelConfig(preset="high", **options).setup(scene_box=box, num_train_data=4, metadata={})
    with fuzz._quiet():
        model.start_from_teacher(teacher, 0, importance, {})
    return model


def _plane_error(model) -> float:
    with torch.no_grad():
        state = model.entropy.quantized(model.latents)
        planes = model.decoder(state.values, tuple(model.spec["plane_resolution"]))
        return float(((model.target_planes - planes) * model.plane_weights).pow(2).mean())


def test_plane_weights_have_a_floor_and_the_paper_weights_are_a_setting():
    floored = _started(importance_floor=0.2)
    paper = _started(importance_floor=0.0)
    assert float(floored.plane_weights.min()) == pytest.approx(0.2) and float(floored.plane_weights.max()) == pytest.approx(1.0)
    assert float(paper.plane_weights.min()) == 0.0  # Eq. 5: the least important entry counts for nothing
    assert torch.allclose(floored.plane_weights, 0.2 + 0.8 * paper.plane_weights)


def test_the_plane_fit_runs_at_the_runs_learning_rates(tmp_path):
    """The plane fit before a run's first step uses the run's optimizer config (``--optimizers.<group>``),
    not fixed rates: a run whose latents have learning rate 0 keeps its latents through the fit."""
    from types import SimpleNamespace

    from nerfstudio.configs.method_configs import all_methods
    from nerfstudio.engine.callbacks import TrainingCallbackAttributes, TrainingCallbackLocation

    optimizers = {name: dict(group) for name, group in all_methods["entropy-compression"].optimizers.items()}
    optimizers["latents"] = {"optimizer": type(optimizers["latents"]["optimizer"])(lr=0.0), "scheduler": None}
    trainer = SimpleNamespace(_start_step=0, base_dir=tmp_path,
                              config=SimpleNamespace(max_num_iterations=5, optimizers=optimizers))
    for latents_lr, moved in ((0.0, False), (None, True)):
        model = _started(plane_fit_iterations=3)
        if latents_lr is None:
            trainer.config.optimizers = all_methods["entropy-compression"].optimizers
        before = {"latents": model.latents.detach().clone(), "decoder": next(model.decoder.parameters()).detach().clone()}
        callbacks = model.get_training_callbacks(TrainingCallbackAttributes(None, None, None, trainer))
        with fuzz._quiet():
            for callback in callbacks:
                callback.run_callback_at_location(0, TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
        assert model.report["plane_fit_iterations"] == 3
        assert (not torch.equal(model.latents, before["latents"])) == moved
        assert not torch.equal(next(model.decoder.parameters()), before["decoder"])  # the decoder's rate is the run's 1e-3


def test_fitting_the_planes_first_starts_training_from_planes_near_the_teacher():
    cold = _started()
    warm = _started()
    with fuzz._quiet():
        warm.fit_planes(60)
    assert warm.report["plane_fit_iterations"] == 60 and "plane_fit_iterations" not in cold.report
    assert _plane_error(warm) < 0.5 * _plane_error(cold)
