"""A .ncz names its scene by name or relative path (no writer's paths): ``decompress`` / ``view``
find it under the working directory or next to the file or a folder above it."""

from pathlib import Path

from nerfconvert.compress.cli import find_scene


def test_scene_found_next_to_a_folder_above_the_file(tmp_path, monkeypatch):
    scene = tmp_path / "data" / "procedural"
    scene.mkdir(parents=True)
    ncz = tmp_path / "outputs" / "procedural" / "vq-compression" / "ts" / "scene.ncz"
    ncz.parent.mkdir(parents=True)
    ncz.write_bytes(b"")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert find_scene(Path("data/procedural"), ncz) == scene
    assert find_scene(Path("missing"), ncz) is None
    # what a file from a stranger may not make us look at
    assert find_scene(Path("/etc"), ncz) is None
    assert find_scene(Path("../data/procedural"), ncz) is None
    monkeypatch.chdir(tmp_path)
    assert find_scene(Path("data/procedural"), ncz) == tmp_path / "data" / "procedural"
