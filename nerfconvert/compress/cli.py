"""``nerfconvert inspect`` and ``nerfconvert decompress``: look into a ``.ncz``, or turn it back
into a nerfstudio run that ``ns-viewer``, ``ns-eval`` and ``ns-export`` open."""

from __future__ import annotations

import copy
import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import tyro

from nerfconvert import NerfconvertError


@dataclass
class Inspect:
    """Print what a .ncz holds: method, architecture, format version, sizes per section."""

    path: tyro.conf.Positional[Path]
    """The .ncz file."""

    def main(self) -> None:
        from nerfconvert.compress.container import describe, read_ncz

        ncz = read_ncz(self.path)
        print(describe(ncz, self.path.stat().st_size), end="")


@dataclass
class Decompress:
    """Rebuild a runnable nerfstudio run from a .ncz: <output-dir>/<experiment>/<method>/<timestamp>/config.yml,
    as ns-train lays runs out. The checkpoint holds the .ncz itself; loading it decodes the file."""

    path: tyro.conf.Positional[Path]
    """The .ncz file."""
    output_dir: Path = Path("outputs")
    """Root of the run, as ns-train's --output-dir."""
    data: Optional[Path] = None
    """The scene's data directory (default: the one recorded in the file). The viewer shows its cameras."""
    experiment_name: Optional[str] = None
    """Default: the scene directory's name."""
    timestamp: Optional[str] = None
    """Default: now, as ns-train names runs."""

    def main(self) -> None:
        from nerfstudio.utils.rich_utils import CONSOLE

        config_path = decompress(self.path, self.output_dir, self.data, self.experiment_name, self.timestamp)
        CONSOLE.print(f"[green]Run written: {config_path}[/green]")
        CONSOLE.print(f"Open it:  ns-viewer --load-config {config_path}")


def find_scene(recorded: Path, ncz_path: Path) -> Optional[Path]:
    """The scene a file names (relative to where its run was started, or by name only: files carry
    no writer's paths): under the working directory, else next to the file or a folder above it."""
    if recorded.is_absolute() or ".." in recorded.parts:
        return None  # not something a nerfconvert file records
    for base in (Path.cwd(), *Path(ncz_path).resolve().parents):
        candidate = base / recorded
        if candidate.is_dir():
            return candidate
    return None


def decompress(path: Path, output_dir: Path, data: Optional[Path] = None, experiment_name: Optional[str] = None,
               timestamp: Optional[str] = None) -> Path:
    from nerfconvert.compress.container import read_ncz

    path = Path(path)
    ncz = read_ncz(path)  # a bad file fails first, before the heavy imports

    import torch

    from nerfstudio.configs.method_configs import all_methods
    from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    if ncz.method not in all_methods:
        raise NerfconvertError(f"{path} was written by {ncz.method!r}, which is not installed; install its plugin.")
    if ncz.method == "entropy-compression":
        from nerfconvert.compress.entropy import codec
    else:
        from nerfconvert.compress.vq import codec
    from nerfconvert.compress.checkpoint import NCZ_KEY
    codec.decode(ncz)  # fail here, not in the viewer, if the file does not decode
    if data is None:
        recorded = ncz.metadata.get("data")
        if not isinstance(recorded, str) or not recorded:
            raise NerfconvertError(f"{path} records no scene directory; pass it with --data.")
        data = find_scene(Path(recorded), path)
        if data is None:
            raise NerfconvertError(
                f"The file's scene {recorded!r} is neither under {Path.cwd()} nor next to {path} or a folder above it; "
                "pass the scene directory with --data."
            )
    if not Path(data).exists():
        raise NerfconvertError(
            f"The scene directory {data} does not exist (paths are relative to {Path.cwd()}); pass it with --data."
        )
    config = copy.deepcopy(all_methods[ncz.method])
    parser = ncz.metadata.get("dataparser", "BlenderDataParserConfig")
    if parser == "NerfstudioDataParserConfig":
        config.pipeline.datamanager.dataparser = NerfstudioDataParserConfig(data=Path(data))
    else:
        config.pipeline.datamanager.dataparser = BlenderDataParserConfig(data=Path(data))
    config.output_dir = Path(output_dir)
    config.experiment_name = experiment_name or Path(data).name
    config.timestamp = timestamp or datetime.datetime.now().strftime("%Y-%m-%d_%H%M%S")
    config.vis = "viewer"
    base = config.get_base_dir()
    if (base / "config.yml").exists():
        raise NerfconvertError(f"{base} already holds a run; pick another --output-dir or --timestamp.")
    config.save_config()
    ckpt_dir = config.get_checkpoint_dir()
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    blob = torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8).clone()
    step = int(ncz.metadata.get("steps", 0))
    torch.save({"step": step, "pipeline": {f"_model.{NCZ_KEY}": blob}, "optimizers": {}, "schedulers": {}, "scalers": {}},
               ckpt_dir / f"step-{step:09d}.ckpt")
    return base / "config.yml"
