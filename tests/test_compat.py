"""The shims nerfconvert installs for nerfstudio 1.1.5: safe checkpoint loading and offline LPIPS."""

from __future__ import annotations

import pickle
import urllib.error
import warnings

import numpy as np
import pytest
import torch

from nerfconvert import compat


@pytest.fixture(autouse=True)
def _installed():
    import nerfstudio.configs.method_configs  # noqa: F401  (discovers the plugin -> installs the shims)

    assert compat._installed, "nerfstudio's plugin discovery did not install the shims"


# ---- safe torch.load ------------------------------------------------------------------
def test_checkpoint_with_numpy_learning_rates_loads_safely(tmp_path):
    # nerfstudio's schedulers store numpy.float64 learning rates in the optimizer state.
    state = {"step": 3, "optimizers": {"fields": {"param_groups": [{"lr": np.float64(1e-3)}]}}}
    torch.save(state, tmp_path / "ckpt.pt")
    loaded = torch.load(tmp_path / "ckpt.pt", map_location="cpu")  # weights_only by default
    assert loaded["optimizers"]["fields"]["param_groups"][0]["lr"] == pytest.approx(1e-3)


class NotAllowed:
    """An arbitrary class: safe loading must still refuse it."""


def test_safe_loading_is_still_on(tmp_path):
    torch.save({"x": NotAllowed()}, tmp_path / "evil.pt")
    with pytest.raises(pickle.UnpicklingError):
        torch.load(tmp_path / "evil.pt")
    # and numpy arrays (not in nerfstudio checkpoints) are not allow-listed
    torch.save({"x": np.zeros(3)}, tmp_path / "array.pt")
    with pytest.raises(pickle.UnpicklingError):
        torch.load(tmp_path / "array.pt")


def test_real_nerfstudio_checkpoint_loads(trained_run):
    run = trained_run("tensorf").parent
    ckpt = sorted((run / "nerfstudio_models").glob("*.ckpt"))[-1]
    state = torch.load(ckpt, map_location="cpu")
    assert {"step", "pipeline", "optimizers", "schedulers"} <= set(state)


# ---- offline LPIPS ----------------------------------------------------------------------
def _offline(*args, **kwargs):
    raise urllib.error.URLError("no network")


def _tiny_nerfacto():
    from nerfstudio.data.scene_box import SceneBox
    from nerfstudio.models.nerfacto import NerfactoModelConfig

    config = NerfactoModelConfig(implementation="torch", num_proposal_iterations=1)
    return config.setup(scene_box=SceneBox(aabb=torch.tensor([[-1.0] * 3, [1.0] * 3])), num_train_data=2)


def test_lpips_degrades_offline_with_one_warning(monkeypatch):
    import torchmetrics.image.lpip as lpip_module

    monkeypatch.setattr(compat, "_RealLPIPS", _offline)
    monkeypatch.setattr(compat, "_lpips_warned", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = lpip_module.LearnedPerceptualImagePatchSimilarity(normalize=True)
        second = lpip_module.LearnedPerceptualImagePatchSimilarity(normalize=True)
    assert isinstance(first, compat.UnavailableLPIPS) and isinstance(second, compat.UnavailableLPIPS)
    lpips_warnings = [w for w in caught if "LPIPS is unavailable" in str(w.message)]
    assert len(lpips_warnings) == 1
    assert torch.isnan(first(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8)))


def test_a_failed_lpips_download_is_not_retried_in_the_process(monkeypatch):
    """Every model builds LPIPS; offline, a download attempt costs seconds: a process tries once."""
    import torchmetrics.image.lpip as lpip_module

    attempts = []

    def offline(*args, **kwargs):
        attempts.append(1)
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(compat, "_RealLPIPS", offline)
    monkeypatch.setattr(compat, "_lpips_failed", None)
    monkeypatch.setattr(compat, "_lpips_warned", False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        built = [lpip_module.LearnedPerceptualImagePatchSimilarity(normalize=True) for _ in range(3)]
    assert len(attempts) == 1 and all(isinstance(b, compat.UnavailableLPIPS) for b in built)
    assert "no network" in built[-1].reason


def test_stock_model_builds_offline_and_reports_lpips_missing(monkeypatch):
    monkeypatch.setattr(compat, "_RealLPIPS", _offline)
    model = _tiny_nerfacto()
    assert isinstance(model.lpips, compat.UnavailableLPIPS)
    outputs = {"rgb": torch.rand(16, 16, 3), "accumulation": torch.rand(16, 16, 1), "depth": torch.rand(16, 16, 1)}
    for i in range(model.config.num_proposal_iterations):
        outputs[f"prop_depth_{i}"] = torch.rand(16, 16, 1)
    metrics, _ = model.get_image_metrics_and_images(outputs, {"image": torch.rand(16, 16, 3)})
    assert "psnr" in metrics and not any("lpips" in k for k in metrics)


def test_lpips_unchanged_when_weights_are_available(monkeypatch):
    class FakeLPIPS(torch.nn.Module):
        def __init__(self, normalize=False):
            super().__init__()

        def forward(self, a, b):
            return torch.tensor(0.25)

    monkeypatch.setattr(compat, "_RealLPIPS", FakeLPIPS)
    model = _tiny_nerfacto()
    assert isinstance(model.lpips, FakeLPIPS)
    outputs = {"rgb": torch.rand(16, 16, 3), "accumulation": torch.rand(16, 16, 1), "depth": torch.rand(16, 16, 1)}
    for i in range(model.config.num_proposal_iterations):
        outputs[f"prop_depth_{i}"] = torch.rand(16, 16, 1)
    metrics, _ = model.get_image_metrics_and_images(outputs, {"image": torch.rand(16, 16, 3)})
    assert metrics["lpips"] == pytest.approx(0.25)
