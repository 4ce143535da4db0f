"""A fifth family registered from this file alone goes through vq-compression, and through
pvd-al as a teacher and as a student.

The family is analytic: a few isotropic Gaussians of density with one constant colour, its
"table" one row per Gaussian (centre, precision, amplitude). The test registers its model
class with a view, the view declares its vq tables through a companion ``CompressionTables`` and its
stock method for students, and the vq machinery (importance, pruning and codebooks, packing,
decoding) and pvd-al (teacher queries, student losses, the student written as a run) work on
it through the view registry alone: nothing outside this file names the family.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Type

import pytest
import torch
from torch import Tensor, nn

from nerfstudio.cameras.cameras import Cameras
from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.model_components.ray_samplers import UniformSampler
from nerfstudio.model_components.renderers import RGBRenderer
from nerfstudio.models.base_model import Model, ModelConfig

from nerfconvert.distill.cameras import look_at
from nerfconvert import NerfconvertError
from nerfconvert.compress.validate import int_range
from nerfconvert.views.tables import CompressionTables, Table
from nerfconvert.views.base import Decoded, FieldView

METHOD = "toy-gaussians"
UNSEEN = 2
"""Gaussians placed far behind the collider's far plane: no ray sees them, so they are pruned."""


@dataclass
class ToyGaussiansModelConfig(ModelConfig):
    _target: Type = field(default_factory=lambda: ToyGaussiansModel)
    collider_params: Dict[str, float] = field(default_factory=lambda: {"near_plane": 0.5, "far_plane": 4.5})
    num_gaussians: int = 32
    num_samples: int = 48
    seed: int = 0
    """Where the Gaussians start, and (seed > 0) their colour."""


class ToyGaussiansModel(Model):
    """density(x) = sum_i a_i exp(-p_i |x - c_i|^2 / 2), constant colour."""

    config: ToyGaussiansModelConfig

    def populate_modules(self) -> None:
        super().populate_modules()
        g = self.config.num_gaussians
        gen = torch.Generator().manual_seed(self.config.seed)
        centres = torch.rand(g, 3, generator=gen) * 1.2 - 0.6
        centres[:UNSEEN] = torch.tensor([0.0, 0.0, -50.0])
        precision = 20.0 + 20.0 * torch.rand(g, 1, generator=gen)
        amplitude = 5.0 + 15.0 * torch.rand(g, 1, generator=gen)
        # the table: a zero row (what pruning writes) is an empty Gaussian (amplitude 0)
        self.gaussians = nn.Parameter(torch.cat([centres, precision, amplitude], dim=1))
        colour = torch.tensor([0.8, 0.4, 0.2]) if self.config.seed == 0 else torch.rand(3, generator=gen)
        self.colour = nn.Parameter(colour)
        self.sampler = UniformSampler(num_samples=self.config.num_samples, single_jitter=False)
        self.renderer_rgb = RGBRenderer(background_color="white")

    def per_gaussian_density(self, positions: Tensor) -> Tensor:
        """[..., 3] -> [..., G]."""
        centres, precision, amplitude = self.gaussians.split([3, 1, 1], dim=-1)
        d2 = (positions[..., None, :] - centres).pow(2).sum(-1)
        return amplitude[:, 0] * torch.exp(-0.5 * precision[:, 0] * d2)

    def density(self, positions: Tensor) -> Tensor:
        return self.per_gaussian_density(positions).sum(-1, keepdim=True)

    def get_param_groups(self) -> Dict[str, List[nn.Parameter]]:
        return {"fields": [self.gaussians, self.colour]}

    def get_outputs(self, ray_bundle: RayBundle) -> Dict[str, Tensor]:
        samples = self.sampler(ray_bundle)
        density = self.density(samples.frustums.get_positions())
        weights = samples.get_weights(density)
        rgb = self.colour.expand(*density.shape[:-1], 3)
        return {"rgb": self.renderer_rgb(rgb=rgb, weights=weights), "accumulation": weights.sum(dim=-2)}

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        return {"rgb_loss": (outputs["rgb"] - batch["image"]).pow(2).mean()}


class ToyGaussiansTables(CompressionTables):
    """The companion the view registers for vq-compression: the Gaussians' rows share one codebook;
    Eq. 4 gives each Gaussian its share of the density at a sample times the sample's weight."""

    name = METHOD
    teacher_method = METHOD
    default_keep_quantile = 0.3
    finetune_lr = {"fields": (1e-2, 1e-3)}  # vq-compression's joint fine-tuning of the model's "fields" group
    config_ranges = {"num_gaussians": int_range(1, 1024), "num_samples": int_range(1, 1024)}  # a stranger's file

    @staticmethod
    def model_size(config) -> int:
        return 5 * int(config.num_gaussians) + 3

    def tables(self) -> List[Table]:
        return [Table("gaussians", "gaussians", lambda d: d, "vq", "gaussians")]

    def accumulate_importance(self, ray_bundle: RayBundle, into: Dict[str, Tensor]) -> None:
        points = self._weighted_points(self.view, ray_bundle)
        if points is None:
            return
        positions, w = points
        per = self.model.per_gaussian_density(positions)
        share = per / per.sum(-1, keepdim=True).clamp_min(1e-30)
        total = into.get("gaussians", torch.zeros(per.shape[-1]))
        into["gaussians"] = total + (share * w[:, None]).sum(0)


def toy_method():
    """The family's stock method, as ``ns-train toy-gaussians`` would build it."""
    from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig
    from nerfstudio.engine.trainer import TrainerConfig
    from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig

    from nerfconvert.schedules import adam_exponential

    return TrainerConfig(
        method_name=METHOD, max_num_iterations=100,
        pipeline=VanillaPipelineConfig(datamanager=VanillaDataManagerConfig(), model=ToyGaussiansModelConfig()),
        optimizers={"fields": adam_exponential(1e-2, 1e-3, 100)},
    )


class ToyGaussiansView(FieldView):
    """phi1: log density at a point; phi2: its exp and the constant colour."""

    family = METHOD
    model_names = ("ToyGaussiansModel",)
    capabilities = {"vq_tables": ToyGaussiansTables}
    student_method = METHOD
    student_description = "a few Gaussians"

    @classmethod
    def stock_config(cls):
        return toy_method()

    def density_activation(self):
        return "exp", 1.0

    @property
    def feature_dim(self) -> int:
        return 1

    def phi1(self, positions: Tensor, directions: Tensor = None) -> Tensor:
        return torch.log(self.model.density(positions).clamp_min(1e-30))

    def phi2(self, features: Tensor, directions: Tensor) -> Decoded:
        rgb = self.model.colour.expand(*features.shape[:-1], 3)
        return Decoded(density=features.exp(), raw_density=features, rgb=rgb)

    def sample(self, ray_bundle: RayBundle) -> RaySamples:
        with torch.no_grad():
            return self.model.sampler(self.model.collider(ray_bundle))

    def phi1_parameters(self) -> list[nn.Parameter]:
        return [self.model.gaussians]

    def phi2_parameters(self) -> list[nn.Parameter]:
        return [self.model.colour]


# ---- registration, from this file alone --------------------------------------------------------------
@pytest.fixture
def toy_family(monkeypatch):
    from nerfstudio.configs.method_configs import all_methods

    from nerfconvert.views import registry

    registry.register(ToyGaussiansModel, ToyGaussiansView, METHOD, "a few Gaussians")
    # the decoder rebuilds a model from a registered method's config, as for the stock families,
    # and a distilled student is written as a run of its method
    monkeypatch.setitem(all_methods, METHOD, toy_method())
    try:
        yield
    finally:
        registry.unregister(ToyGaussiansModel)


def _model() -> ToyGaussiansModel:
    box = SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
    return ToyGaussiansModelConfig().setup(scene_box=box, num_train_data=4, metadata={})


def _cameras(n: int = 4, size: int = 16) -> Cameras:
    angles = torch.arange(n) * (2 * torch.pi / n)
    eyes = torch.stack([2.5 * torch.cos(angles), 2.5 * torch.sin(angles), torch.full((n,), 0.8)], dim=1)
    c2w = look_at(eyes, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))  # the pseudo-camera helper of pvd-al
    return Cameras(camera_to_worlds=c2w, fx=20.0, fy=20.0, cx=size / 2, cy=size / 2, width=size, height=size)


def _bundles(cameras: Cameras):
    for i in range(len(cameras)):
        yield cameras.generate_rays(camera_indices=i, keep_shape=True).flatten()


def _render(model: Model, camera: Cameras) -> Tensor:
    model.eval()
    with torch.no_grad():
        return model.get_outputs_for_camera(camera)["rgb"]


def test_the_registry_lists_the_toy_family(toy_family):
    from nerfconvert.compress.tables import VQ_TABLES, vq_tables_for, vq_tables_named
    from nerfconvert.views.registry import SUPPORTED_MODELS, companions, view_for

    model = _model()
    assert isinstance(view_for(model), ToyGaussiansView)
    assert type(vq_tables_for(model)) is ToyGaussiansTables
    assert vq_tables_named(METHOD) is ToyGaussiansTables
    assert companions(VQ_TABLES)["ToyGaussiansModel"] is ToyGaussiansTables
    assert SUPPORTED_MODELS["ToyGaussiansModel"] == f"{METHOD} (a few Gaussians)"


def test_unregistered_the_toy_family_is_unsupported():
    from nerfconvert.compress.tables import vq_tables_for, vq_tables_named

    with pytest.raises(NerfconvertError, match=r"cannot compress a ToyGaussiansModel teacher: .*supports .*tensorf \(vm\)"):
        vq_tables_for(_model())
    assert vq_tables_named(METHOD) is None


def test_the_toy_family_compresses_and_decodes(toy_family):
    from nerfconvert.compress.container import from_bytes
    from nerfconvert.compress.vq import codec
    from nerfconvert.compress.tables import accumulate_importance
    from nerfconvert.compress.vq.compressor import VQSettings, build_states
    from nerfconvert.compress.tables import vq_tables_for

    model = _model()
    original = model.gaussians.detach().clone()
    cameras = _cameras()
    family = vq_tables_for(model)
    importance = accumulate_importance(family, _bundles(cameras))
    scores = importance["gaussians"]
    assert scores.shape == (model.config.num_gaussians,)
    assert bool((scores[:UNSEEN] == 0).all()) and bool((scores[UNSEEN:] > 0).all())

    settings = VQSettings(codebook_size=8, kmeans_iterations=10, kmeans_batch_size=64, keep_quantile=0.3)
    states = build_states(family, importance, settings)
    state = states["gaussians"]
    assert not bool(state.alive[:UNSEEN].any())  # unseen Gaussians are pruned ...
    assert state.kept.any() and state.vq.sum() > settings.codebook_size  # ... the rest kept or vector-quantised
    rows = model.gaussians.detach()
    assert bool((rows[:UNSEEN] == 0).all())
    assert torch.equal(rows[state.vq], state.codebook[state.assignment[state.vq]])
    assert not torch.allclose(rows[state.vq], original[state.vq])  # the codebook changed them

    data = codec.pack(family, states, {"steps": 0})
    ncz = from_bytes(data)
    assert ncz.method == "vq-compression" and ncz.architecture["family"] == METHOD
    assert ncz.architecture["model_method"] == METHOD
    decoded, decoded_family = codec.decode(ncz)
    assert type(decoded) is ToyGaussiansModel and type(decoded_family) is ToyGaussiansTables

    # what the file stores: fp16 codes for the vector-quantised rows, 8 bits per channel for the kept ones
    back = decoded.gaussians.detach()
    assert torch.equal(back[~state.alive], torch.zeros_like(back[~state.alive]))
    assert torch.equal(back[state.vq], rows[state.vq].half().float())
    kept = rows[state.kept]
    step = (kept.max(0).values - kept.min(0).values) / 255
    assert bool(((back[state.kept] - kept).abs() <= step / 2 + 1e-6).all())
    assert torch.equal(decoded.colour.detach(), model.colour.detach())

    # the decoded model renders as the compressed one in memory; the uncompressed one renders differently
    camera = cameras[0:1]
    in_memory, from_file = _render(model, camera), _render(decoded, camera)
    assert (from_file - in_memory).abs().max() < 5e-3
    with torch.no_grad():
        model.gaussians.copy_(original)
    assert (_render(model, camera) - in_memory).abs().max() > 5e-2

    # a stranger's file is checked against the ranges the family declares before its model is built
    ncz.architecture["model_config"]["num_gaussians"] = 1 << 20
    with pytest.raises(NerfconvertError, match="model_config.num_gaussians"):
        codec.decode(ncz)


# ---- pvd-al: the toy family as a teacher and as a student ----------------------------------------------
def _distil(teacher: Path, student: str, out: Path, steps: int = 24) -> Path:
    """``ns-train pvd-al --teacher-ckpt <teacher> <student>`` for ``steps`` steps, in-process; the student's config.yml."""
    from nerfstudio.scripts import train

    from nerfconvert.compat import own_event_writers
    from nerfconvert.distill.method import make_pvd_config

    config = make_pvd_config(teacher, student, out, max_num_iterations=steps, num_rays=128, device_type="cpu")
    config.pipeline.model.eval_num_rays_per_chunk = 1024
    with own_event_writers():
        train.main(config)
    runs = sorted(out.rglob(f"{student}/*/config.yml"))
    assert runs, f"no {student} run was written under {out}"
    return runs[-1]


def _toy_run(scene: Path, out: Path, seed: int = 0) -> Path:
    """A run of the toy method (two training steps), as ns-train writes it; its config.yml."""
    from common import short_run_config
    from nerfstudio.scripts import train

    from nerfconvert.compat import own_event_writers

    config = short_run_config(METHOD, out, 2, data=scene, rays=64, device="cpu")
    config.pipeline.model.seed = seed
    with own_event_writers():
        train.main(config)
    return config.get_base_dir() / "config.yml"


def _psnr(a: Tensor, b: Tensor) -> float:
    return float(-10 * torch.log10((a - b).pow(2).mean().clamp_min(1e-10)))


@pytest.mark.slow
def test_the_toy_family_is_a_pvd_al_teacher(toy_family, object_scene, tmp_path):
    from nerfconvert.views.registry import load_run
    from nerfconvert.views.vm import VMView

    teacher = _toy_run(object_scene, tmp_path / "teacher")
    student = _distil(teacher, "tensorf", tmp_path / "student", steps=40)

    t_pipeline, t_view = load_run(teacher, device="cpu")
    s_pipeline, s_view = load_run(student, device="cpu")
    assert isinstance(t_view, ToyGaussiansView) and isinstance(s_view, VMView)
    camera = t_pipeline.datamanager.train_dataset.cameras[0:1]
    t_rgb, s_rgb = _render(t_pipeline.model, camera), _render(s_pipeline.model, camera)
    untrained = _render(s_view.student_model_config().setup(scene_box=t_pipeline.datamanager.train_dataset.scene_box,
                                                            num_train_data=8, metadata={}), camera)
    assert _psnr(s_rgb, t_rgb) > _psnr(untrained, t_rgb) + 1.0  # the student learnt the toy teacher


@pytest.mark.slow
def test_the_toy_family_is_a_pvd_al_student(toy_family, object_scene, tmp_path):
    from nerfconvert.distill.students import student_optimizers
    from nerfconvert.views.registry import load_run

    assert set(student_optimizers(METHOD, 10)) == {"fields", "pvd_projection"}  # the stock method's groups
    teacher = _toy_run(object_scene, tmp_path / "teacher", seed=1)  # other Gaussians, another colour
    student = _distil(teacher, METHOD, tmp_path / "student", steps=40)

    t_pipeline, _ = load_run(teacher, device="cpu")
    s_pipeline, s_view = load_run(student, device="cpu")  # a normal run of the toy method
    assert isinstance(s_view, ToyGaussiansView) and s_pipeline.model.config.seed == 0
    camera = t_pipeline.datamanager.train_dataset.cameras[0:1]
    t_rgb = _render(t_pipeline.model, camera)
    assert _psnr(_render(s_pipeline.model, camera), t_rgb) > _psnr(_render(_model(), camera), t_rgb) + 1.0


# ---- nerfconvert convert: the toy family as --to, through pvd-al and vq-compression ---------------------
def _tiny(method: str, config) -> None:
    """``run_convert``'s configure hook: CPU-sized stages for a 32-Gaussian family."""
    config.steps_per_eval_batch = config.steps_per_eval_image = config.steps_per_eval_all_images = 10**6
    if method == "pvd-al":
        config.pipeline.datamanager.steps_per_epoch = 1
        config.pipeline.datamanager.poses_per_epoch = 10
        config.pipeline.active_learning.ray_pool_size = 64
        config.pipeline.model.eval_num_rays_per_chunk = 1024
        return
    model = config.pipeline.model
    model.importance_cache_dir = None
    model.codebook_size = 8
    model.kmeans_iterations = 10
    model.kmeans_batch_size = 64
    model.importance_max_rays = 1024


def test_the_convert_command_offers_the_toy_family(toy_family, tmp_path):
    import tyro

    from nerfconvert.cli import commands
    from nerfconvert.convert import to_choices

    assert METHOD in to_choices()
    command = tyro.cli(commands(), args=["convert", "--teacher", str(tmp_path / "config.yml"), "--to", METHOD])
    assert command.to == METHOD  # the command line's choices are the registry's as it stands


def test_the_convert_command_knows_only_registered_families(tmp_path):
    import tyro

    from nerfconvert.cli import commands

    with pytest.raises(SystemExit):
        tyro.cli(commands(), args=["convert", "--teacher", str(tmp_path / "config.yml"), "--to", METHOD])


@pytest.mark.slow
def test_the_toy_family_goes_through_nerfconvert_convert(toy_family, object_scene, tmp_path):
    """Toy teacher -> toy student (pvd-al) -> vq-compression of the student, with ``nerfconvert convert``'s
    own planning, stages and closing table."""
    from nerfconvert.compress.container import read_ncz
    from nerfconvert.compress.vq import codec
    from nerfconvert.convert import plan_convert, run_convert

    teacher = _toy_run(object_scene, tmp_path / "teacher", seed=1)
    with pytest.raises(NerfconvertError, match="--compress entropy codes feature planes, and --to toy-gaussians gives a model without them"):
        plan_convert(teacher, to=METHOD, compress="entropy", data=object_scene, output_dir=tmp_path / "out", device="cpu")
    result = run_convert(teacher, to=METHOD, compress="vq", data=object_scene, steps=24, compress_steps=4,
                         output_dir=tmp_path / "out", device="cpu", num_rays_per_batch=128, eval_views=1,
                         timestamp="ts", configure=_tiny)
    assert [row.role for row in result.rows] == ["teacher", "student", "compressed"]
    assert [row.method for row in result.rows] == [METHOD, METHOD, "vq-compression"]
    ncz = read_ncz(result.ncz)
    assert ncz.architecture["family"] == METHOD and ncz.architecture["model_method"] == METHOD
    decoded, _ = codec.decode(ncz)
    assert type(decoded) is ToyGaussiansModel  # the file rebuilds the registered family's model
    student, compressed = result.rows[1], result.rows[2]
    print("toy convert:", [(r.role, r.size_bytes, r.psnr_vs_teacher, r.psnr_vs_gt) for r in result.rows])
    # the compressed student renders as the student does, up to its codebook (8 codes for 32 Gaussians)
    assert compressed.psnr_vs_teacher > student.psnr_vs_teacher - 3.0
