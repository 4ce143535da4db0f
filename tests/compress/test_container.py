"""The .ncz container: round trip, atomic write, and a one-line error for each kind of bad file."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from nerfconvert import NerfconvertError
from nerfconvert.compress import container
from nerfconvert.compress.container import FORMAT_VERSION, MAGIC, Section, read_ncz, write_ncz


@pytest.fixture
def ncz_path(tmp_path):
    rng = np.random.default_rng(0)
    sections = {
        "codes": rng.standard_normal((64, 27)).astype(np.float16),
        "mask": np.packbits(rng.random(1000) > 0.5),
        "zeros": bytes(5000),
        "text": Section(b"hello", dtype="uint8"),
    }
    path = tmp_path / "scene.ncz"
    write_ncz(path, "vq-compression", {"family": "voxel", "resolution": 32}, sections, metadata={"psnr": 30.5})
    return path, sections


def test_round_trip(ncz_path):
    path, sections = ncz_path
    ncz = read_ncz(path)
    assert ncz.method == "vq-compression" and ncz.format_version == FORMAT_VERSION
    assert ncz.architecture == {"family": "voxel", "resolution": 32}
    assert ncz.metadata == {"psnr": 30.5}
    np.testing.assert_array_equal(ncz.array("codes"), sections["codes"])
    assert ncz.array("codes").dtype == np.float16 and ncz.array("codes").shape == (64, 27)
    np.testing.assert_array_equal(ncz.array("mask"), sections["mask"])
    assert ncz.sections["zeros"].data == bytes(5000)
    assert ncz.sections["zeros"].stored_bytes < 200  # entropy coded
    assert ncz.sections["text"].data == b"hello" and ncz.sections["text"].codec == "raw"  # raw wins on tiny data
    assert path.read_bytes().startswith(MAGIC)
    assert "codes" in container.describe(ncz, path.stat().st_size)


def test_payload_is_a_safetensors_blob(ncz_path):
    """After our 24-byte prefix the payload follows the safetensors layout (u64 + JSON header + U8 tensors)."""
    path, _ = ncz_path
    data = path.read_bytes()
    (n,) = struct.unpack_from("<Q", data, 24)
    header = json.loads(data[32 : 32 + n])
    assert header["codes"]["dtype"] == "U8"
    assert "nerfconvert" in header["__metadata__"]


def test_best_codec_is_smallest():
    data = np.repeat(np.arange(50, dtype=np.uint8), 100).tobytes()
    codec, encoded = container.best_encoding(data)
    for other in container.available_codecs():
        assert len(encoded) <= len(container.encode_bytes(data, other))
    assert container.decode_bytes(encoded, codec, len(data)) == data


def test_atomic_write_leaves_no_temporary_files(ncz_path):
    path, _ = ncz_path
    write_ncz(path, "m", {}, {"a": b"x" * 10})  # overwrite in place
    assert sorted(p.name for p in path.parent.iterdir()) == ["scene.ncz"]
    assert read_ncz(path).method == "m"


def test_atomic_write_keeps_old_file_on_failure(ncz_path, monkeypatch):
    path, _ = ncz_path
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(container.os, "replace", boom)
    with pytest.raises(OSError):
        write_ncz(path, "m", {}, {"a": b"x"})
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["scene.ncz"]


def _expect_error(path, data, *words):
    path.write_bytes(data)
    with pytest.raises(NerfconvertError) as info:
        read_ncz(path)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message
    return message


@pytest.mark.parametrize("position", [30, 100, -40, -1])
def test_corrupted_byte(ncz_path, position):
    path, _ = ncz_path
    data = bytearray(path.read_bytes())
    data[position] ^= 0x40
    _expect_error(path, bytes(data), "corrupted")


def test_corrupted_file_header_byte(ncz_path):
    path, _ = ncz_path
    data = bytearray(path.read_bytes())
    data[14] ^= 0x01  # inside total_length
    _expect_error(path, bytes(data), "corrupted")


@pytest.mark.parametrize("keep", [3, 20, 500, -1])
def test_truncated(ncz_path, keep):
    path, _ = ncz_path
    data = path.read_bytes()
    _expect_error(path, data[:keep], "truncated")


def test_wrong_magic(ncz_path, tmp_path):
    path, _ = ncz_path
    _expect_error(path, b"PK\x03\x04" + path.read_bytes()[4:], "not a nerfconvert .ncz", "magic")
    _expect_error(path, b"just some text, not a scene at all", "magic")


def test_future_version(ncz_path):
    path, _ = ncz_path
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 8, FORMAT_VERSION + 1)
    struct.pack_into("<I", data, 20, container.zlib.crc32(bytes(data[:20])))
    message = _expect_error(path, bytes(data), "format version", "Upgrade")
    assert str(FORMAT_VERSION + 1) in message


def test_missing_file_and_section(tmp_path, ncz_path):
    with pytest.raises(NerfconvertError, match="does not exist"):
        read_ncz(tmp_path / "nope.ncz")
    path, _ = ncz_path
    with pytest.raises(NerfconvertError, match="no section"):
        read_ncz(path).array("missing")
