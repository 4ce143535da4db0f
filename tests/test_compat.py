"""nerfconvert.compat's patches of nerfstudio 1.1.5 and torch (its docstring is the ledger). Each bug
is shown on the unpatched stack, in a fresh interpreter where nothing installed the patches, next
to the patched behaviour; importing the library installs nothing."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import urllib.error
import warnings

import numpy as np
import pytest
import torch

from nerfconvert import compat


def fresh(code: str, env: dict = None, timeout: int = 240) -> str:
    """Run ``code`` in a fresh interpreter; its stdout (fails with its stderr)."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            timeout=timeout, env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


PATCHED_TARGETS = """
import torch, torchmetrics.image.lpip as lpip
from nerfstudio.configs import external_methods
from nerfstudio.engine.trainer import Trainer
from nerfstudio.models.base_model import Model
from nerfstudio.models.splatfacto import SplatfactoModel

def targets():
    return {"Tensor.cuda": torch.Tensor.cuda, "Model.__init_subclass__": Model.__dict__.get("__init_subclass__"),
            "Trainer._load_checkpoint": Trainer._load_checkpoint, "SplatfactoModel.load_state_dict":
            SplatfactoModel.load_state_dict, "SplatfactoModel.get_outputs": SplatfactoModel.get_outputs,
            "lpip.LearnedPerceptualImagePatchSimilarity": lpip.LearnedPerceptualImagePatchSimilarity,
            "ExternalMethodDummyTrainerConfig.__post_init__": external_methods.ExternalMethodDummyTrainerConfig.__post_init__}

before = targets()
"""


@pytest.mark.slow  # a fresh interpreter that imports nerfstudio: 6-10 s, kept out of the fast lane
def test_importing_the_library_patches_nothing():
    out = fresh(PATCHED_TARGETS + """
import sys
import nerfconvert.views, nerfconvert.compress, nerfconvert.distill
from nerfconvert import compat
changed = sorted(k for k, v in targets().items() if v is not before[k])
print("library:", changed, compat._installed)
assert "nerfstudio.configs.method_configs" in sys.modules  # the stock table was read, its discovery ran
compat.install()  # what the entry points run: the check above sees patches
print("installed:", sorted(k for k, v in targets().items() if v is not before[k]))
""")
    assert "library: [] False" in out, out
    installed = out.split("installed: ")[1]
    for name in ("ExternalMethodDummyTrainerConfig.__post_init__", "Model.__init_subclass__",
                 "SplatfactoModel.load_state_dict", "lpip.LearnedPerceptualImagePatchSimilarity"):
        assert name in installed, out
    # never a torch class, and nerfstudio's trainer is not patched either
    assert "Tensor.cuda" not in installed and "Trainer._load_checkpoint" not in installed, out
    assert ("SplatfactoModel.get_outputs" in installed) == (not torch.cuda.is_available()), out


@pytest.mark.slow  # a fresh interpreter that imports nerfstudio: 6-10 s, kept out of the fast lane
@pytest.mark.parametrize("entry", ["import nerfstudio.configs.method_configs",  # every ns-* command
                                   "from method_configs.pvd_al import pvd_al"])
def test_the_entry_points_install_the_patches(entry):
    out = fresh(f"{entry}\nfrom nerfconvert import compat\nprint(compat._installed)\n")
    assert out.strip() == "True"


@pytest.mark.slow  # a fresh interpreter that imports nerfstudio: 6-10 s, kept out of the fast lane
def test_the_nerfconvert_command_installs_the_patches(tmp_path):
    out = fresh(f"""
from nerfconvert import compat
from nerfconvert.cli import main
assert not compat._installed
try:
    main(["describe", "--load-config", {str(tmp_path / "missing.yml")!r}])  # parsed, then a one-line error
except SystemExit as exit:
    print("exit", exit.code)
print(compat._installed)
""")
    assert out.split() == ["exit", "2", "True"], out


# ---- 1. safe torch.load (nerfstudio#3683) -------------------------------------------------------
def test_unpatched_torch_load_refuses_nerfstudio_checkpoints_patched_loads_them(tmp_path):
    # nerfstudio's schedulers store numpy.float64 learning rates in the optimizer state.
    state = {"step": 3, "optimizers": {"fields": {"param_groups": [{"lr": np.float64(1e-3)}]}}}
    torch.save(state, tmp_path / "ckpt.pt")
    out = fresh(f"""
import pickle, torch
from nerfconvert import compat
path = {str(tmp_path / "ckpt.pt")!r}
try:
    torch.load(path, map_location="cpu")  # as nerfstudio 1.1.5 calls it
    print("unpatched: loads")
except pickle.UnpicklingError:
    print("unpatched: UnpicklingError")
with compat.checkpoint_globals():  # the narrow fix, for our own loads
    print("scoped:", torch.load(path)["optimizers"]["fields"]["param_groups"][0]["lr"])
try:
    torch.load(path)
    print("after: loads")
except pickle.UnpicklingError:
    print("after: UnpicklingError")  # nothing left installed
compat.install_safe_globals()
with compat.checkpoint_globals():  # must not take the installed patch away when it ends
    pass
print("patched:", torch.load(path, map_location="cpu")["optimizers"]["fields"]["param_groups"][0]["lr"])
""")
    assert out.split() == ["unpatched:", "UnpicklingError", "scoped:", "0.001", "after:", "UnpicklingError",
                           "patched:", "0.001"], out


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


# ---- 2. offline LPIPS ----------------------------------------------------------------------------
@pytest.mark.slow  # a fresh interpreter that imports nerfstudio: 6-10 s, kept out of the fast lane
def test_unpatched_stock_model_dies_offline_patched_one_reports_lpips_missing(tmp_path):
    """Offline (a proxy that refuses, no cached AlexNet): stock nerfacto cannot be built without the patch."""
    out = fresh("""
import torch
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.models.nerfacto import NerfactoModelConfig
from nerfconvert import compat

def build():
    config = NerfactoModelConfig(implementation="torch", num_proposal_iterations=1)
    return config.setup(scene_box=SceneBox(aabb=torch.tensor([[-1.0] * 3, [1.0] * 3])), num_train_data=2)

try:
    build()
    print("unpatched: built")
except OSError as err:
    print("unpatched:", type(err).__name__)
compat.install_offline_lpips()
model = build()
outputs = {"rgb": torch.rand(8, 8, 3), "accumulation": torch.rand(8, 8, 1), "depth": torch.rand(8, 8, 1),
           "prop_depth_0": torch.rand(8, 8, 1)}
metrics, _ = model.get_image_metrics_and_images(outputs, {"image": torch.rand(8, 8, 3)})
print("patched:", type(model.lpips).__name__, sorted(metrics))
""", env={"TORCH_HOME": str(tmp_path), "https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
          "no_proxy": "", "NO_PROXY": ""})
    lines = [line for line in out.splitlines() if "patched:" in line]  # torch prints its download attempt
    assert lines[0] in ("unpatched: URLError", "unpatched: OSError", "unpatched: ConnectionRefusedError"), out
    assert lines[1] == "patched: UnavailableLPIPS ['psnr', 'ssim']", out


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


# ---- 3. start-up: external methods without inspect.stack() -------------------------------------------
def test_unpatched_registration_walks_the_stack_once_per_external_method():
    out = fresh("""
import inspect
from nerfstudio.configs import external_methods
from nerfconvert import compat

import sys
calls = []
# counts, then walks the stack as inspect.stack() does from the caller's frame
inspect.stack = lambda context=1: calls.append(1) or inspect.getouterframes(sys._getframe(1), context)
configs, _ = external_methods.get_external_methods()
print("unpatched:", len(calls) == len(configs) > 0)
calls.clear()
compat.install_fast_external_methods()
configs, _ = external_methods.get_external_methods()
print("patched:", len(calls), len(configs) > 0)
""")
    assert out.split() == ["unpatched:", "True", "patched:", "0", "True"], out


# ---- 4. splatfacto's loading keeps its Parameters ----------------------------------------------------
def _splatfacto(n: int):
    from nerfstudio.data.scene_box import SceneBox
    from nerfstudio.models.splatfacto import SplatfactoModelConfig

    points = (torch.rand(n, 3), torch.full((n, 3), 128.0))
    return SplatfactoModelConfig().setup(scene_box=SceneBox(torch.tensor([[-1.0] * 3, [1.0] * 3])), num_train_data=1,
                                         metadata={}, seed_points=points)


def test_splatfacto_loading_replaced_the_parameters_the_optimizer_holds():
    from nerfstudio.models.splatfacto import SplatfactoModel

    checkpoint = _splatfacto(12).state_dict()
    original = SplatfactoModel.load_state_dict.__wrapped__  # nerfstudio's own
    for load, keeps in ((original, False), (SplatfactoModel.load_state_dict, True)):
        model = _splatfacto(5)
        optimizer = torch.optim.Adam([model.gauss_params["means"]], lr=0.1)
        load(model, dict(checkpoint))
        assert model.num_points == 12 and torch.equal(model.means, checkpoint["gauss_params.means"])
        assert (optimizer.param_groups[0]["params"][0] is model.gauss_params["means"]) == keeps
        model.means.sum().backward()
        before = model.means.detach().clone()
        optimizer.step()
        assert (not torch.equal(model.means, before)) == keeps  # unpatched: the loaded Gaussians never move


# ---- 5. splatfacto without CUDA: .cuda() inside its two methods only -----------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA, splatfacto's .cuda() calls work as written")
def test_unpatched_splatfacto_needs_cuda_patched_builds_on_the_cpu_and_tensor_cuda_is_torchs():
    from nerfstudio.models.splatfacto import SplatfactoModel

    assert SplatfactoModel.populate_modules.__wrapped__ is not SplatfactoModel.populate_modules
    model = _splatfacto(6)  # the patched populate_modules: its .cuda() keeps the SH coefficients on the CPU
    assert model.features_rest.device.type == "cpu"
    with pytest.raises((RuntimeError, AssertionError)):  # nerfstudio's own, as written: .cuda() without CUDA
        SplatfactoModel.populate_modules.__wrapped__(model)
    assert torch.Tensor.cuda is torch._C.TensorBase.cuda  # torch's class is not patched
    with pytest.raises((RuntimeError, AssertionError)):
        torch.zeros(1).cuda()
