"""Files from strangers: a ``.ncz`` with valid checksums but hostile contents decodes or is refused
with the one-line error, never a traceback, and never makes its reader allocate what the file
cannot justify (issue 18). Tiny real files are built in-process (no ns-train): fast lane."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from nerfconvert import NerfconvertError
from nerfconvert.compress import container, fuzz

FUZZ_MEMORY_BOUND_MB = 512


@pytest.fixture(scope="module")
def tiny_files():
    return {"vq": fuzz.tiny_vq_file(), "entropy": fuzz.tiny_entropy_file()}


def _resealed(data: bytes, edit) -> bytes:
    parts = fuzz.split(data)
    edit(parts)
    return fuzz.reseal(parts)


def _decode(data: bytes):
    ncz = container.from_bytes(data)
    if ncz.method == "entropy-compression":
        from nerfconvert.compress.entropy import codec
    else:
        from nerfconvert.compress.vq import codec
    return codec.decode(ncz)


def test_fuzz_tiny_vq_and_entropy_files(tiny_files):
    """A few hundred seeded mutations, decoded in a worker process: each decodes or is refused with
    the one-line error, and the worker's peak RSS grows by less than the bound."""
    counts = {}
    worker = fuzz.Worker([tiny_files["vq"], tiny_files["entropy"]], timeout=60)
    worker.start()  # one worker process for both files: its start (imports) is most of the time
    try:
        for kind, cases in (("vq", 240), ("entropy", 160)):
            result = fuzz.run(tiny_files[kind], cases, seed=18, memory_bound_mb=FUZZ_MEMORY_BOUND_MB,
                              bomb_size=64 << 20, worker=worker)
            assert not result.findings, f"{kind}: {result.findings[:5]}"
            assert result.peak_growth_mb < FUZZ_MEMORY_BOUND_MB
            assert result.counts["refused"] > cases // 2 and result.counts["decoded"] > 0  # the mutations do bite
            counts[kind] = result.counts
    finally:
        worker.stop()
    assert worker.restarts == 0, counts


def test_mutations_are_resealed_with_valid_checksums(tiny_files):
    """The fuzzer reaches the parser: an unmutated split/reseal round trip is byte-identical, and
    a mutated file passes the CRC and SHA-256 (its error, if any, is not a checksum error)."""
    for data in tiny_files.values():
        assert fuzz.reseal(fuzz.split(data)) == data
    mutator = fuzz.Mutator(tiny_files["vq"], bomb_size=1 << 20)
    for seed in range(30):
        data, _ = mutator.case(seed)
        try:
            container.from_bytes(data)
        except NerfconvertError as err:
            assert "checksum" not in str(err) and "CRC" not in str(err)


BOMB_CHILD = textwrap.dedent("""
    import json, sys
    def hwm():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    from nerfconvert import NerfconvertError
    from nerfconvert.compress import container
    before = hwm()
    try:
        container.read_ncz(sys.argv[1])
        outcome = "read"
    except NerfconvertError as err:
        outcome = str(err)
    print(json.dumps({"outcome": outcome, "growth_kb": hwm() - before}))
""")


BOMB_SIZE = 1100 << 20


@pytest.fixture(scope="module")
def bombs():
    return {codec: fuzz.bomb(codec, BOMB_SIZE) for codec in ("zlib", "lzma")}


@pytest.mark.parametrize("codec", ["zlib", "lzma"])
@pytest.mark.parametrize("declared", ["small", "megabyte", "true size"])
def test_decompression_bomb_is_refused_before_it_inflates(tmp_path, bombs, codec, declared):
    """A section of at most 1.1 MB that inflates to 1.1 GB is refused, and the reading process grows < 100 MB."""
    size = BOMB_SIZE
    blob = bombs[codec]
    assert len(blob) < 2 << 20
    data = container.to_bytes("vq-compression", {"family": "voxel"}, {"a": b"x" * 100, "bomb": b"y" * 16})
    raw = {"small": 16, "megabyte": 1 << 20, "true size": size}[declared]

    def edit(parts):
        a, b = parts.tensors["bomb"]["data_offsets"]
        parts.blob = parts.blob[:a] + blob
        parts.tensors["bomb"]["data_offsets"] = [a, a + len(blob)]
        parts.ours["sections"]["bomb"].update(codec=codec, raw_bytes=raw, shape=[raw], dtype="uint8")

    path = tmp_path / "bomb.ncz"
    path.write_bytes(_resealed(data, edit))
    out = subprocess.run([sys.executable, "-c", BOMB_CHILD, str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    assert answer["outcome"] != "read" and "\n" not in answer["outcome"]
    assert any(w in answer["outcome"] for w in ("bomb", "ratio", "may inflate")), answer
    assert answer["growth_kb"] < 100 * 1024, answer


def test_bounded_inflation_refuses_one_byte_too_many():
    for codec in ("zlib", "lzma"):
        encoded = container.encode_bytes(bytes(1000), codec)
        assert container.decode_bytes(encoded, codec, 1000) == bytes(1000)
        with pytest.raises(NerfconvertError, match="inflates past its declared"):
            container.decode_bytes(encoded, codec, 999)
        with pytest.raises(NerfconvertError, match="ends before|wrong length"):
            container.decode_bytes(encoded, codec, 1001)


def _set_section(name, **spec):
    def edit(parts):
        parts.ours["sections"][name].update(spec)
    return edit


def _set_arch(*path, value):
    def edit(parts):
        obj = parts.ours["architecture"]
        for key in path[:-1]:
            obj = obj[key]
        obj[path[-1]] = value
    return edit


@pytest.mark.parametrize("edit, words", [
    (_set_section("t/sh/codebook", dtype="object"), "dtype"),
    (_set_section("t/sh/codebook", shape="16x27"), "shape"),
    (_set_section("t/sh/codebook", shape=[16, 28]), "declares shape"),
    (_set_section("t/sh/codebook", raw_bytes="864"), "not an integer"),
    (_set_section("t/sh/codebook", raw_bytes=1 << 40), "raw size"),
    (_set_arch("tables", "sh", "channels", value="27"), "not an integer"),
    (_set_arch("tables", "sh", "rows", value=1 << 33), "rows"),
    (_set_arch("state", "field.aabb", "dtype", value="object"), "dtype"),
    (_set_arch("state", "field.aabb", "shape", value=[2, "3"]), "not an integer"),
    (_set_arch("state", "field.aabb", "storage", value="pickle"), "storage"),
    (_set_arch("model_config", "grid_resolutions", value=[4096]), "outside"),
    (_set_arch("model_config", "grid_resolutions", value=[512]), "tensor elements"),
    (_set_arch("model_config", "sh_degree", value="2"), "not an integer"),
    (_set_arch("model_config", "_target", value="os.system"), "no reader applies"),
    (_set_arch("model_config", "density_activation", value="eval"), "not one of"),
    (_set_arch("scene_box", value=[[0, 0, 0], [0, 0, 0]]), "empty"),
    (_set_arch("num_train_data", value=-1), "num_train_data"),
])
def test_hostile_vq_fields_get_the_one_line_error(tiny_files, edit, words):
    data = _resealed(tiny_files["vq"], edit)
    with pytest.raises(NerfconvertError) as info:
        _decode(data)
    message = str(info.value)
    assert words in message and "\n" not in message and "unexpected" not in message, message


@pytest.mark.parametrize("edit, words", [
    (_set_arch("latent_shape", value=[3, 4, 3000, 3000]), "tensor elements"),
    (_set_arch("latent_shape", value=[3, 4, 3]), "latent_shape"),
    (_set_arch("plane_resolution", value=[1000, 12]), "plane height"),
    (_set_arch("hidden_channels", value=1.5), "not an integer"),
    (_set_section("entropy/pmf_counts", dtype="int16"), "where the decoder reads uint16"),
    (_set_section("entropy/cdf_length", shape=[2, 2]), "where the architecture implies [4]"),
])
def test_hostile_entropy_fields_get_the_one_line_error(tiny_files, edit, words):
    data = _resealed(tiny_files["entropy"], edit)
    with pytest.raises(NerfconvertError) as info:
        _decode(data)
    assert words in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_entropy_tables_that_would_derail_the_range_coder_are_refused(tiny_files):
    """CompressAI's range coder trusts its CDFs: a zero-probability symbol or a CDF that does not
    end at 2^16 is refused before it is used."""
    import numpy as np

    ncz = container.from_bytes(tiny_files["entropy"])
    counts = ncz.array("entropy/pmf_counts").copy()
    for bad in (0, 7):
        changed = counts.copy()
        changed[3] = bad
        sections = {name: s for name, s in ncz.sections.items()}
        sections["entropy/pmf_counts"] = container.Section.from_array(changed.astype(np.uint16))
        data = container.to_bytes(ncz.method, ncz.architecture, sections, ncz.metadata)
        with pytest.raises(NerfconvertError, match="no probability|does not end at"):
            _decode(data)


def test_unmutated_tiny_files_decode(tiny_files):
    for data in tiny_files.values():
        model = _decode(data)
        assert model is not None


# ---- no local paths in shared files ---------------------------------------------------------------------------
def test_portable_path_never_keeps_an_absolute_path():
    assert container.portable_path("data/blender/lego") == "data/blender/lego"
    assert container.portable_path("/home/alice/scenes/lego") == "lego"
    assert container.portable_path("../../alice/lego") == "lego"
    assert container.portable_path("~/lego") == "lego"
    assert container.portable_path(None) is None


def test_inspect_shows_the_teacher_by_method_and_step_and_no_absolute_path(vq_run, tmp_path):
    import os

    from nerfconvert.compress.cli import Inspect

    path = vq_run("plenoxels").parent / "scene.ncz"
    ncz = container.read_ncz(path)
    assert "teacher" not in ncz.metadata and ncz.metadata["teacher_step"] >= 1
    for value in ncz.metadata.values():
        assert not (isinstance(value, str) and (os.path.isabs(value) or value.startswith("~"))), ncz.metadata
    text = container.describe(ncz, path.stat().st_size)
    assert "teacher         " in text and f"at step {ncz.metadata['teacher_step']}" in text
    assert str(tmp_path.parent.parent) not in text and "/tmp" not in text and os.path.expanduser("~") + "/" not in text
    Inspect(path).main()  # the command prints the same summary
