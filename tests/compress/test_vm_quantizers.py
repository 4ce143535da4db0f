"""TensoRF planes under both vq quantisers, in-process on a small random tensorf (fast lane): the
lattice (the default: no codebook to store) and VQ-TensoRF's codebooks. Each packs, decodes to the
same planes, names its quantiser in the file, and a file or run with the wrong one is refused in
one line."""

from __future__ import annotations

import copy

import pytest
import torch

from nerfconvert import NerfconvertError
from nerfconvert.compress import container
from nerfconvert.compress.tables import vq_tables_for
from nerfconvert.compress.vq import codec
from nerfconvert.compress.vq.compressor import VQSettings, build_states
from nerfconvert.compress.fuzz import _quiet, reseal, split

RES = 16


def _tensorf(seed: int = 0):
    from nerfstudio.configs.method_configs import all_methods
    from nerfstudio.data.scene_box import SceneBox

    torch.manual_seed(seed)
    config = copy.deepcopy(all_methods["tensorf"].pipeline.model)
    config.init_resolution, config.final_resolution = RES, RES
    config.num_den_components, config.num_color_components, config.appearance_dim = 4, 8, 6
    model = config.setup(scene_box=SceneBox(aabb=torch.tensor([[-1.0, -1, -1], [1, 1, 1]])), num_train_data=4, metadata={})
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def _compress(quantizer, codes: int = 16):
    model = _tensorf()
    return (model, *_compress_model(model, quantizer, codes))


def _compress_model(model, quantizer, codes: int = 16):
    family = vq_tables_for(model, quantizer)
    importance = {t.importance_key: torch.rand(RES * RES) ** 4 for t in family.tables()}
    with _quiet():
        states = build_states(family, importance, VQSettings(codebook_size=codes, kmeans_iterations=3, kmeans_batch_size=256))
    return family, states, codec.pack(family, states, {"steps": 1, "teacher_method": "tensorf", "teacher_step": 1})


@pytest.fixture(scope="module", params=[None, "codebook", "lattice"])
def compressed(request):
    return request.param, _compress(request.param)


def test_tensorf_planes_are_lattice_tables_by_default_and_codebooks_on_request(compressed):
    quantizer, (_, family, states, data) = compressed
    ncz = container.from_bytes(data)
    expected = quantizer or "lattice"
    assert family.quantizer == expected and ncz.architecture["quantizer"] == expected
    kinds = {t.kind for t in family.tables()}
    assert kinds == ({"lattice"} if expected == "lattice" else {"vq"})
    names = set(ncz.sections)
    if expected == "lattice":
        assert not any(n.endswith("/codebook") for n in names) and "t/color_plane0/codes" in names
    else:
        assert "t/color_plane0/codebook" in names and "t/color_plane0/indices" in names


def test_decoded_planes_equal_the_compressed_model(compressed):
    _, (model, family, _, data) = compressed
    decoded, decoded_family = codec.decode(container.from_bytes(data))
    assert decoded_family.quantizer == family.quantizer
    ours, theirs = model.state_dict(), decoded.state_dict()
    for table in family.tables():
        a, b = ours[table.param_name].float(), theirs[table.param_name].float()
        if table.kind == "lattice":
            assert torch.equal(a, b), table.name  # integer multiples of a float32 step: exact
        else:
            assert (a - b).abs().max() < 0.02 * a.abs().max() + 1e-3, table.name  # 8-bit kept voxels


def test_a_lattice_file_is_smaller_than_a_codebook_file_here():
    """As on the lego100 teacher (4,096 codes for 4,089-8,957 live vectors a plane): with about as many
    codes as live voxels, the codebooks are most of a codebook file."""
    *_, lattice = _compress("lattice")
    *_, codebook = _compress("codebook", codes=RES * RES)
    assert len(lattice) < len(codebook)


def test_resume_with_another_quantizer_and_unknown_quantizers_are_refused_in_one_line():
    model, family, states, data = _compress("lattice")
    with pytest.raises(NerfconvertError) as info:
        codec.table_states(container.from_bytes(data), vq_tables_for(_tensorf(), "codebook"))
    assert "--pipeline.model.quantizer" in str(info.value) and "\n" not in str(info.value)

    parts = split(data)
    parts.ours["architecture"]["quantizer"] = "__import__('os')"
    with pytest.raises(NerfconvertError) as info:
        codec.decode(container.from_bytes(reseal(parts)))
    assert "quantiser" in str(info.value) and "\n" not in str(info.value)

    with pytest.raises(NerfconvertError) as info:
        vq_tables_for(model, "octree")
    assert "--pipeline.model.quantizer" in str(info.value) and "codebook, lattice" in str(info.value)


def test_files_without_a_quantizer_decode_as_codebook_files():
    """Files written before the choice existed name no quantiser: their tensorf planes were codebooks."""
    _, _, _, data = _compress("codebook")
    parts = split(data)
    del parts.ours["architecture"]["quantizer"]
    decoded, family = codec.decode(container.from_bytes(reseal(parts)))
    assert family.quantizer == "codebook"


@pytest.mark.parametrize("quantizer", ["codebook", "lattice"])
def test_pruned_plane_entries_hold_the_mean_of_the_pruned_entries(quantizer):
    """A zero in a VM plane is not empty space (the entry is one of three terms of a ReLU'd sum, shared
    along an axis): pruned entries hold their per-channel mean, in the model and in the decoded file."""
    model = _tensorf()
    original = {k: v.clone() for k, v in model.state_dict().items()}
    family, states, data = _compress_model(model, quantizer)
    decoded, _ = codec.decode(container.from_bytes(data))
    ncz = container.from_bytes(data)
    for table in family.tables():
        state = states[table.name]
        dead = ~state.alive
        assert 0 < int(dead.sum()) < dead.numel(), table.name
        before = table.rows(original[table.param_name])
        expected = before[dead].float().mean(dim=0)
        assert torch.allclose(state.fill, expected, atol=1e-6), table.name
        for source in (model.state_dict(), decoded.state_dict()):
            rows = table.rows(source[table.param_name])
            assert torch.equal(rows[dead], expected.expand(int(dead.sum()), -1).to(rows.dtype)), table.name
        assert ncz.array(f"t/{table.name}/fill", "float32").shape == (before.shape[1],)


def test_a_corrupted_fill_is_refused_in_one_line():
    model = _tensorf()
    family, states, _ = _compress_model(model, "lattice")
    states["density_plane0"].fill = torch.full((4,), float("nan"))  # what a hostile writer could store
    data = codec.pack(family, states, {"steps": 1, "teacher_method": "tensorf", "teacher_step": 1})
    with pytest.raises(NerfconvertError) as info:
        codec.decode(container.from_bytes(data))
    assert "fill" in str(info.value) and "\n" not in str(info.value)
