"""vq-compression of nerfacto's hash grids, in-process on a small stock nerfacto (no training):
every hash table (field and proposal networks) is a lattice table, a tensor registered under two
names is stored once and decodes as one tensor, the decoded model renders like the in-memory one,
and the importance pass is capped by default and shows progress."""

from __future__ import annotations

import pytest
import torch

from nerfstudio.cameras.cameras import Cameras
from nerfstudio.data.scene_box import SceneBox

from nerfconvert.distill.cameras import look_at


def _cameras(n: int = 4, size: int = 16) -> Cameras:
    angles = torch.arange(n) * (2 * torch.pi / n)
    eyes = torch.stack([2.5 * torch.cos(angles), 2.5 * torch.sin(angles), torch.full((n,), 0.8)], dim=1)
    c2w = look_at(eyes, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))  # the pseudo-camera helper of pvd-al
    return Cameras(camera_to_worlds=c2w, fx=20.0, fy=20.0, cx=size / 2, cy=size / 2, width=size, height=size)


@pytest.fixture(scope="module")
def nerfacto():
    """A small stock nerfacto (torch hash grids, two proposal networks, camera optimizer on) whose
    tables hold spread values, as a trained teacher's do."""
    from nerfstudio.models.nerfacto import NerfactoModelConfig

    from nerfconvert import compat

    def no_lpips(*args, **kwargs):
        raise OSError("not needed here")

    compat.install()
    proposal = {"hidden_dim": 16, "log2_hashmap_size": 10, "num_levels": 3, "max_res": 32, "use_linear": False}
    config = NerfactoModelConfig(implementation="torch", num_levels=6, log2_hashmap_size=12, max_res=128,
                                 hidden_dim=32, hidden_dim_color=32, num_nerf_samples_per_ray=24,
                                 num_proposal_samples_per_ray=(48, 24), proposal_net_args_list=[proposal, proposal],
                                 eval_num_rays_per_chunk=1 << 12)
    torch.manual_seed(0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compat, "_RealLPIPS", no_lpips)
        model = config.setup(scene_box=SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])),
                             num_train_data=4, metadata={})
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "hash_table" in name:
                p.copy_(0.3 * torch.randn_like(p))
    return model


def _bundles(cameras: Cameras, rays: int = 256):
    for i in range(len(cameras)):
        bundle = cameras.generate_rays(camera_indices=i, keep_shape=True).flatten()
        for start in range(0, len(bundle), rays):
            yield bundle[start : start + rays]


def _render(model, camera: Cameras) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model.get_outputs_for_camera(camera)["rgb"]


@pytest.fixture(scope="module")
def compressed(nerfacto):
    from nerfconvert.compress.container import from_bytes
    from nerfconvert.compress.vq import codec
    from nerfconvert.compress.tables import accumulate_importance
    from nerfconvert.compress.vq.compressor import VQSettings, build_states
    from nerfconvert.compress.tables import vq_tables_for

    cameras = _cameras()
    family = vq_tables_for(nerfacto)
    importance = accumulate_importance(family, _bundles(cameras))
    states = build_states(family, importance, VQSettings())
    with torch.no_grad():  # the file stores the MLPs at fp16: make the in-memory model hold those values
        covered = {t.param_name for t in family.tables()}
        for name, p in nerfacto.named_parameters():
            if name not in covered and p.is_floating_point() and p.numel() >= codec.SMALL_TENSOR:
                p.copy_(p.half().float())
    data = codec.pack(family, states, {})
    decoded, _ = codec.decode(from_bytes(data))
    return {"family": family, "states": states, "importance": importance, "data": data,
            "ncz": from_bytes(data), "decoded": decoded, "cameras": cameras}


def test_every_hash_table_is_a_lattice_table_with_its_own_importance(compressed, nerfacto):
    tables = compressed["ncz"].architecture["tables"]
    assert set(tables) == {"hash", "proposal0", "proposal1"}
    assert all(spec["kind"] == "lattice" for spec in tables.values())
    for name, scores in compressed["importance"].items():
        state = compressed["states"][name]
        assert scores.shape[0] == tables[name]["rows"] and float(scores.sum()) > 0, name
        # what no ray touched is pruned; the most important entries are kept at the finer step
        assert not bool(state.alive[scores == 0].any())
        assert state.kept.any() and (state.alive & ~state.kept).any()
        coarse, fine = state.steps
        assert fine < coarse


def test_tables_hold_lattice_values(compressed, nerfacto):
    family, states = compressed["family"], compressed["states"]
    params = dict(nerfacto.named_parameters())
    for table in family.tables():
        rows = params[table.param_name].detach()
        state = states[table.name]
        coarse, fine = state.steps
        vq = state.alive & ~state.kept
        for mask, step in ((vq, coarse), (state.kept, fine)):
            ratio = rows[mask] / step
            assert torch.allclose(ratio, ratio.round(), atol=1e-3), table.name
        assert bool((rows[~state.alive] == 0).all())


def test_shared_tensors_are_stored_once_and_decode_as_one(compressed):
    ncz, decoded = compressed["ncz"], compressed["decoded"]
    state = ncz.architecture["state"]
    aliases = {key: spec["of"] for key, spec in state.items() if spec["storage"] == "alias"}
    for i in (0, 1):
        assert aliases[f"proposal_networks.{i}.mlp_base.0.hash_table"] == f"proposal_networks.{i}.encoding.hash_table"
    assert not any(name.startswith("s/") and name[2:] in aliases for name in ncz.sections)
    # no tensor stored twice: every stored section is a distinct tensor of the model
    stored = [key for key, spec in state.items() if spec["storage"] not in ("alias",)]
    assert len(stored) == len(set(stored))
    for i in (0, 1):
        net = decoded.proposal_networks[i]
        assert net.encoding.hash_table is net.mlp_base[0].hash_table
        assert net.encoding.hash_table.data_ptr() == net.mlp_base[0].hash_table.data_ptr()


def test_decoded_model_renders_like_the_in_memory_one(compressed, nerfacto):
    camera = compressed["cameras"][0:1]
    in_memory = _render(nerfacto, camera)
    from_file = _render(compressed["decoded"], camera)
    assert from_file.shape == in_memory.shape
    assert float((from_file - in_memory).abs().max()) < 1e-4
    # and the tolerance can fail: one step of the lattice in the field's table changes the render
    decoded = compressed["decoded"]
    with torch.no_grad():
        table = decoded.field.mlp_base.encoding.hash_table if hasattr(decoded.field.mlp_base, "encoding") else \
            next(p for n, p in decoded.field.named_parameters() if "hash_table" in n)
        saved = table.clone()
        table.add_(compressed["states"]["hash"].steps[0])
        try:
            assert float((_render(decoded, camera) - in_memory).abs().max()) > 1e-4
        finally:
            table.copy_(saved)


def test_lattice_fine_tuning_accumulates_small_updates(compressed, nerfacto):
    from nerfconvert.compress.vq.compressor import apply_states

    family, states = compressed["family"], compressed["states"]
    table = next(t for t in family.tables() if t.name == "proposal0")
    param = dict(nerfacto.named_parameters())[table.param_name]
    state = states["proposal0"]
    row = int(torch.nonzero(state.alive & ~state.kept)[0])
    coarse = state.steps[0]
    latent = state.latent[row, 0].item()
    before = param.data[row, 0].item()
    # updates of 0.3 steps: rounding the row after each would leave it where it is forever; the latent
    # accumulates them (started 0.45 steps past the row's lattice point: 0.75, 1.05, 1.35, 1.65 steps)
    state.latent[row, 0] = (round(latent / coarse) + 0.45) * coarse
    apply_states(family, states, sync_codes=True)
    assert param.data[row, 0].item() == pytest.approx(before, abs=1e-6)
    with torch.no_grad():
        for _ in range(4):
            param.data[row, 0] += 0.3 * coarse
            apply_states(family, states, sync_codes=True)
            if _ == 0:
                assert param.data[row, 0].item() == pytest.approx(before + coarse, abs=1e-6)
    assert param.data[row, 0].item() == pytest.approx(before + 2 * coarse, abs=1e-6)


def test_importance_ray_cap():
    from nerfconvert.compress.teacher import importance_ray_cap

    assert importance_ray_cap(None, 10**6, 1 << 15, "cpu") == 1 << 15
    assert importance_ray_cap(None, 10**6, 1 << 15, "cuda") == 1 << 19
    assert importance_ray_cap(None, 1000, 1 << 15, "cpu") is None  # small scenes use every pixel
    assert importance_ray_cap(0, 10**6, 1 << 15, "cpu") is None  # 0: every pixel
    assert importance_ray_cap(5000, 10**6, 1 << 15, "cpu") == 5000


def test_importance_pass_shows_progress(capsys):
    from nerfconvert.compress.teacher import with_progress

    cameras = _cameras(n=2, size=8)
    bundles = list(_bundles(cameras, rays=32))
    seen = list(with_progress(iter(bundles), 128, "vq-compression: importance"))
    assert seen == bundles
    out = capsys.readouterr().out
    assert "vq-compression: importance" in out and "128/128" in out
