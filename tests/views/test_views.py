"""The two-level views of the stock families reproduce their models exactly.

Every comparison runs on a real run trained through ``ns-train`` (``trained_run``), loaded with
``load_run``: phi2(phi1(x, d)) against the model's own field, and rendering at the view's own
samples against the model's own ``forward`` (collider + ``get_outputs``).
"""

from __future__ import annotations

import math
from typing import Dict, Tuple

import pytest
import torch

from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.field_components.field_heads import FieldHeadNames
from nerfstudio.fields.nerfacto_field import NerfactoField
from nerfstudio.model_components.renderers import RGBRenderer

from nerfconvert.views import Decoded, FieldView, load_run
from nerfconvert.views.hash import EMPTY_RAW_DENSITY, HashGridView, pad_packed_samples
from nerfconvert.views.mlp import MLPView
from nerfconvert.views.vm import RAY_MASK_KEY, VMView

pytestmark = pytest.mark.slow

METHODS = ["nerfacto", "tensorf", "vanilla-nerf"]
VIEW_OF = {"nerfacto": HashGridView, "tensorf": VMView, "vanilla-nerf": MLPView}
# the model output that the view's fine-field rendering corresponds to
RGB_KEY = {"nerfacto": "rgb", "tensorf": "rgb", "vanilla-nerf": "rgb_fine"}
ACC_KEY = {"nerfacto": "accumulation", "tensorf": "accumulation", "vanilla-nerf": "accumulation_fine"}

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")),
]
ATOL = 1e-5


@pytest.fixture(scope="module")
def loaded(trained_run):
    """``loaded(method, device)`` -> (pipeline, view), loaded once per module."""
    cache: Dict[Tuple[str, str], tuple] = {}

    def _get(method: str, device: str = "cpu"):
        key = (method, device)
        if key not in cache:
            cache[key] = load_run(trained_run(method), device=device)
        return cache[key]

    return _get


def fine_field(model):
    return model.field_fine if hasattr(model, "field_fine") else model.field


def camera_bundle(pipeline, num_rays: int = 256) -> RayBundle:
    """Rays of a held-out camera, spread over the whole image."""
    cameras = pipeline.datamanager.eval_dataset.cameras.to(pipeline.device)
    bundle = cameras.generate_rays(camera_indices=0).flatten()
    step = max(len(bundle) // num_rays, 1)
    return bundle[::step][:num_rays]


def handmade_bundle(device, num_rays: int = 64, with_camera_indices: bool = False) -> RayBundle:
    """Rays built by hand (no Cameras): half aim at the object, half miss the scene box."""
    g = torch.Generator().manual_seed(0)
    angle = torch.rand(num_rays, generator=g) * 2 * math.pi
    origins = torch.stack([4 * torch.cos(angle), 4 * torch.sin(angle), torch.full_like(angle, 1.0)], -1)
    targets = 0.5 * (torch.rand(num_rays, 3, generator=g) - 0.5)
    directions = targets - origins
    miss = torch.arange(num_rays) % 2 == 1
    directions[miss] = -directions[miss]  # pointing away from the scene
    directions = directions / directions.norm(dim=-1, keepdim=True)
    bundle = RayBundle(
        origins=origins.to(device),
        directions=directions.to(device),
        pixel_area=torch.full((num_rays, 1), 1e-4, device=device),
    )
    if with_camera_indices:
        bundle.camera_indices = torch.zeros((num_rays, 1), dtype=torch.long, device=device)
    return bundle


def field_reference(model, ray_samples: RaySamples):
    """density, rgb, raw density as the model's own field computes them (eval mode)."""
    field = fine_field(model)
    outputs = field(ray_samples)
    density, rgb = outputs[FieldHeadNames.DENSITY], outputs[FieldHeadNames.RGB]
    if hasattr(model, "field_fine"):
        # vanilla NeRF: the density head's linear output
        _, base_out = field.get_density(ray_samples)
        raw = field.field_output_density.net(base_out)
    elif isinstance(field, NerfactoField):
        field.get_density(ray_samples)
        raw = field._density_before_activation  # the value fed to trunc_exp
    else:
        # TensoRF: the summed VM components, before the ReLU
        x = SceneBox.get_normalized_positions(ray_samples.frustums.get_positions(), field.aabb) * 2 - 1
        raw = field.density_encoding(x).sum(dim=-1, keepdim=True)
    return density, rgb, raw


def assert_close(actual, expected, atol=ATOL):
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    torch.testing.assert_close(actual, expected, atol=atol, rtol=0)


# ---- layout ----------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_load_run_picks_the_view_and_layout_is_consistent(loaded, method):
    pipeline, view = loaded(method)
    assert type(view) is VIEW_OF[method]
    assert view.family == {"nerfacto": "hash", "tensorf": "vm", "vanilla-nerf": "mlp"}[method]
    assert type(pipeline.model).__name__ in view.model_names

    positions = torch.rand(2, 5, 3) * 2 - 1
    directions = torch.nn.functional.normalize(torch.randn(2, 5, 3), dim=-1)
    with torch.no_grad():
        features = view.phi1(positions, directions)
        decoded = view.phi2(features, directions)
    assert features.shape == (2, 5, view.feature_dim)
    assert isinstance(decoded, Decoded)
    assert decoded.density.shape == decoded.raw_density.shape == (2, 5, 1)
    assert decoded.rgb.shape == (2, 5, 3)
    volume = features[..., view.volume_feature_slice]
    assert 0 < volume.shape[-1] <= view.feature_dim


def test_layouts_of_each_family(loaded):
    _, hash_view = loaded("nerfacto")
    geo = hash_view.field.geo_feat_dim
    assert hash_view.feature_dim == geo + 2
    assert hash_view.volume_feature_slice == slice(0, 1 + geo)

    _, vm_view = loaded("tensorf")
    field = vm_view.field
    dens, app = field.density_encoding.get_out_dim(), field.B.out_features
    assert vm_view.feature_dim == dens + app
    assert vm_view.density_feature_slice == slice(0, dens)
    assert vm_view.appearance_feature_slice == slice(dens, dens + app)

    _, mlp_view = loaded("vanilla-nerf")
    base = mlp_view.field.mlp_base
    assert mlp_view.split_layer == 4  # PVD Table 1 default
    assert mlp_view.carries_encoding  # the skip connection at layer 4 lies in phi2
    assert mlp_view.feature_dim == base.layer_width + mlp_view.field.position_encoding.get_out_dim()
    assert mlp_view.volume_feature_slice == slice(0, base.layer_width)


# ---- phi2(phi1(x, d)) == the model's field ---------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", METHODS)
def test_two_levels_reproduce_the_field(loaded, method, device):
    pipeline, view = loaded(method, device)
    model = pipeline.model
    with torch.no_grad():
        ray_samples = view.sample(camera_bundle(pipeline))
        density_ref, rgb_ref, raw_ref = field_reference(model, ray_samples)
        positions = ray_samples.frustums.get_positions()
        decoded = view.phi2(view.phi1(positions, ray_samples.frustums.directions), ray_samples.frustums.directions)
    assert_close(decoded.density, density_ref)
    assert_close(decoded.rgb, rgb_ref)
    assert_close(decoded.raw_density, raw_ref)
    assert decoded.density.device.type == device


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", METHODS)
def test_rendering_own_samples_reproduces_the_model(loaded, method, device):
    pipeline, view = loaded(method, device)
    model = pipeline.model
    assert not model.training
    with torch.no_grad():
        expected = model(camera_bundle(pipeline))  # collider + get_outputs
        rendered = view.render_samples(view.sample(camera_bundle(pipeline)))
    assert_close(rendered["rgb"], expected[RGB_KEY[method]])
    assert_close(rendered["accumulation"], expected[ACC_KEY[method]])
    assert torch.equal(view.render_rays(camera_bundle(pipeline))["rgb"], rendered["rgb"])


@pytest.mark.parametrize("method", METHODS)
def test_handmade_bundle_without_cameras(loaded, method):
    pipeline, view = loaded(method)
    with torch.no_grad():
        rendered = view.render_rays(handmade_bundle(pipeline.device))
        # nerfacto's field insists on camera indices even in eval mode, where they are unused
        expected = pipeline.model(handmade_bundle(pipeline.device, with_camera_indices=True))
    assert_close(rendered["rgb"], expected[RGB_KEY[method]])
    assert_close(rendered["accumulation"], expected[ACC_KEY[method]])


def test_sampling_leaves_the_model_unchanged(loaded):
    pipeline, view = loaded("nerfacto")
    sampler = pipeline.model.proposal_sampler
    before = sampler._steps_since_update
    sampler._steps_since_update = 10**6  # "due for an update": a sampler call would reset it
    try:
        with torch.no_grad():
            view.sample(camera_bundle(pipeline, 16))
        assert sampler._steps_since_update == 10**6
    finally:
        sampler._steps_since_update = before


# ---- family specifics ------------------------------------------------------------------
def test_vm_skips_rays_that_the_coarse_pass_finds_empty(loaded):
    pipeline, view = loaded("tensorf")
    with torch.no_grad():
        ray_samples = view.sample(handmade_bundle(pipeline.device))
        mask = ray_samples.metadata[RAY_MASK_KEY]
        assert mask.shape == (*ray_samples.shape, 1)
        assert (~mask).any() and mask.any()  # rays that miss the box are skipped, the others not
        rendered = view.render_samples(ray_samples)
        expected = pipeline.model(handmade_bundle(pipeline.device))
    assert_close(rendered["rgb"], expected["rgb"])
    skipped = ~mask[:, 0, 0]
    assert torch.all(rendered["accumulation"][skipped] == 0)


def test_vm_raw_density_is_the_sum_before_relu(loaded):
    _, view = loaded("tensorf")
    features = torch.randn(10, view.feature_dim)
    directions = torch.nn.functional.normalize(torch.randn(10, 3), dim=-1)
    decoded = view.phi2(features, directions)
    assert_close(decoded.raw_density, features[:, view.density_feature_slice].sum(-1, keepdim=True))
    assert_close(decoded.density, torch.relu(decoded.raw_density))


def test_hash_out_of_box_points_are_masked_like_the_field(loaded):
    pipeline, view = loaded("nerfacto")
    field = view.field
    # without scene contraction the field normalises by the aabb and masks points outside it
    contraction = field.spatial_distortion
    field.spatial_distortion = None
    try:
        with torch.no_grad():
            ray_samples = view.sample(camera_bundle(pipeline, 64))
            density_ref, rgb_ref, raw_ref = field_reference(pipeline.model, ray_samples)
            decoded = view.query(ray_samples.frustums.get_positions(), ray_samples.frustums.directions)
    finally:
        field.spatial_distortion = contraction
    positions = ray_samples.frustums.get_positions()
    outside = ((positions < field.aabb[0]) | (positions > field.aabb[1])).any(-1, keepdim=True)
    assert outside.any() and (~outside).any()
    assert_close(decoded.density, density_ref)
    assert_close(decoded.rgb, rgb_ref)
    assert torch.all(decoded.density[outside] == 0)
    assert torch.all(decoded.raw_density[outside] == EMPTY_RAW_DENSITY)
    assert_close(decoded.raw_density[~outside], raw_ref[~outside])


@pytest.mark.parametrize("use_average", [True, False])
def test_hash_eval_appearance_embedding(loaded, monkeypatch, use_average):
    pipeline, view = loaded("nerfacto")
    field = view.field
    assert field.embedding_appearance is not None
    with torch.no_grad():  # make the mean embedding matter
        field.embedding_appearance.embedding.weight.add_(0.5)
    try:
        monkeypatch.setattr(field, "use_average_appearance_embedding", use_average)
        with torch.no_grad():
            ray_samples = view.sample(camera_bundle(pipeline, 32))
            _, rgb_ref, _ = field_reference(pipeline.model, ray_samples)
            decoded = view.query(ray_samples.frustums.get_positions(), ray_samples.frustums.directions)
        assert_close(decoded.rgb, rgb_ref)
        appearance_params = set(map(id, field.embedding_appearance.parameters()))
        assert bool(appearance_params & set(map(id, view.phi2_parameters()))) == use_average
    finally:
        with torch.no_grad():
            field.embedding_appearance.embedding.weight.sub_(0.5)


@pytest.mark.parametrize("split_layer", range(1, 9))
def test_mlp_every_split_reproduces_the_field(loaded, split_layer):
    pipeline, default_view = loaded("vanilla-nerf")
    view = MLPView(pipeline.model, split_layer=split_layer)
    field = view.field
    with torch.no_grad():
        ray_samples = default_view.sample(camera_bundle(pipeline, 32))
        density_ref, rgb_ref, raw_ref = field_reference(pipeline.model, ray_samples)
        positions, directions = ray_samples.frustums.get_positions(), ray_samples.frustums.directions
        features = view.phi1(positions, directions)
        decoded = view.phi2(features, directions)
    # the skip re-injects gamma(x) before layer 4: phi2 needs it iff the split is at or before it
    assert view.carries_encoding == (split_layer <= 4)
    expected_dim = field.mlp_base.layer_width + (field.position_encoding.get_out_dim() if split_layer <= 4 else 0)
    assert features.shape[-1] == view.feature_dim == expected_dim
    assert_close(decoded.density, density_ref)
    assert_close(decoded.rgb, rgb_ref)
    assert_close(decoded.raw_density, raw_ref)
    # phi1 + phi2 parameters are exactly the fine field's parameters, split at K
    phi1, phi2 = set(map(id, view.phi1_parameters())), set(map(id, view.phi2_parameters()))
    assert not phi1 & phi2
    assert phi1 | phi2 == set(map(id, field.parameters()))
    assert len(view.phi1_parameters()) == 2 * split_layer  # weight + bias per layer


def test_mlp_rejects_a_split_outside_the_base_mlp(loaded):
    pipeline, _ = loaded("vanilla-nerf")
    for bad in (0, 9):
        with pytest.raises(ValueError, match="split_layer"):
            MLPView(pipeline.model, split_layer=bad)


# ---- parameters and gradients ----------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_parameter_split_and_gradients(loaded, method):
    pipeline, view = loaded(method)
    phi1, phi2 = view.phi1_parameters(), view.phi2_parameters()
    assert phi1 and phi2
    ids1, ids2 = set(map(id, phi1)), set(map(id, phi2))
    assert not ids1 & ids2
    assert (ids1 | ids2) <= set(map(id, pipeline.model.parameters()))

    # L_v-style and RGB losses reach the intended blocks (block-wise training, PVD Fig. 2)
    positions = torch.rand(64, 3) * 2 - 1
    directions = torch.nn.functional.normalize(torch.randn(64, 3), dim=-1)
    features = view.phi1(positions, directions)
    decoded = view.phi2(features, directions)
    pipeline.model.zero_grad(set_to_none=True)
    (features[..., view.volume_feature_slice].square().mean() + decoded.rgb.mean()).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in phi1)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in phi2)
    pipeline.model.zero_grad(set_to_none=True)


# ---- instant-ngp and packed samples ----------------------------------------------------
def test_pad_packed_samples_renders_like_packed_rays():
    bundle = RayBundle(
        origins=torch.zeros(3, 3),
        directions=torch.tensor([[0.0, 0.0, 1.0]] * 3),
        pixel_area=torch.ones(3, 1),
    )
    # ray 0: three samples, ray 1: none, ray 2: two samples (packed, sorted by ray)
    ray_indices = torch.tensor([0, 0, 0, 2, 2])
    starts = torch.tensor([0.1, 0.2, 0.4, 1.0, 1.5])
    ends = torch.tensor([0.2, 0.4, 0.5, 1.5, 1.6])
    padded = pad_packed_samples(bundle, starts, ends, ray_indices, fill=0.05)
    assert padded.shape == (3, 3)
    assert torch.all(padded.deltas[1] == 0) and torch.all(padded.deltas[2, 2] == 0)

    density = torch.rand(3, 3, 1) * 5
    rgb = torch.rand(3, 3, 3)
    renderer = RGBRenderer(background_color="black")
    padded_rgb = renderer(rgb=rgb, weights=padded.get_weights(density))
    for ray, count in ((0, 3), (2, 2)):
        own = ray_indices == ray
        real = pad_packed_samples(bundle[ray : ray + 1], starts[own], ends[own], torch.zeros(count, dtype=torch.long))
        expected = renderer(rgb=rgb[ray : ray + 1, :count], weights=real.get_weights(density[ray : ray + 1, :count]))
        assert_close(padded_rgb[ray : ray + 1], expected)
    assert torch.all(padded_rgb[1] == 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="nerfacc's occupancy grid needs CUDA")
def test_instant_ngp_view_on_cuda():
    from nerfstudio.models.instant_ngp import InstantNGPModelConfig

    from nerfconvert import compat

    compat.install()  # offline LPIPS
    aabb = torch.tensor([[-1.5, -1.5, -1.5], [1.5, 1.5, 1.5]])
    model = InstantNGPModelConfig(background_color="black").setup(scene_box=SceneBox(aabb=aabb), num_train_data=4)
    model = model.to("cuda").eval()
    model.occupancy_grid.binaries[...] = True  # a fresh grid is empty: mark every cell occupied
    view = HashGridView(model)
    assert isinstance(view, FieldView) and view.family == "hash"
    assert view.feature_dim == model.field.geo_feat_dim + 2

    with torch.no_grad():
        bundle = handmade_bundle("cuda", num_rays=16, with_camera_indices=True)
        ray_samples = view.sample(bundle)
        outputs = model.field(ray_samples)
        decoded = view.query(ray_samples.frustums.get_positions(), ray_samples.frustums.directions)
        assert_close(decoded.density, outputs[FieldHeadNames.DENSITY])
        assert_close(decoded.rgb, outputs[FieldHeadNames.RGB])
        rendered = view.render_samples(ray_samples)
        expected = model(handmade_bundle("cuda", num_rays=16, with_camera_indices=True))
    assert_close(rendered["rgb"], expected["rgb"], atol=1e-4)
