"""The ``nerfconvert`` command.

    nerfconvert scene     make a seeded procedural scene (nerfstudio blender format)
    nerfconvert demo      the main job on the embedded scene: scene -> trained run -> result
    nerfconvert describe  load a run and print its two-level view (family, feature sizes)
    nerfconvert distillnerf-predict  one frame -> a DistillNeRF scene in one forward pass -> a viewable run
"""

from __future__ import annotations

import dataclasses
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Union

import tyro
from typing_extensions import Annotated

from nerfconvert import NerfconvertError
from nerfconvert.compress.cli import Decompress, Inspect
from nerfconvert.convert import convert_command
from nerfconvert.viewer import View
from nerfconvert.distillnerf.predict import DistillNerfPredict
from nerfconvert.distillnerf.teachers import DistillNerfTeachers


@dataclass
class Scene:
    """Make a seeded procedural scene: the object scene in nerfstudio's blender format, or a
    capture-like scene (ground, sky, lens distortion, exposure) laid out like ns-process-data."""

    output_dir: Path = Path("data/procedural")
    """Where to write the scene (object: transforms_{train,val,test}.json, RGBA PNGs, depth maps;
    capture kinds: transforms.json, images/, sparse_pc.ply)."""
    seed: int = 0
    """Scene seed: the same seed always gives the same files."""
    kind: Literal["object", "capture-360", "capture-forward"] = "object"
    """object: the still life floating in white; capture-360: it on a ground under a sky, filmed
    walking around it; capture-forward: objects before a wall, filmed forward-facing (LLFF-like)."""
    resolution: int = 64
    """Object kind: image width and height in pixels."""
    num_train: int = 50
    num_val: int = 10
    num_test: int = 20
    width: int = 64
    """Capture kinds: image width in pixels."""
    height: int = 48
    """Capture kinds: image height in pixels."""
    num_frames: int = 40
    """Capture kinds: number of frames (nerfstudio-data holds out about a tenth for eval)."""
    overwrite: bool = False
    """Replace an earlier scene in output_dir."""

    def main(self) -> None:
        from nerfconvert.scenes import generate_capture_scene, generate_object_scene
        from nerfstudio.utils.rich_utils import CONSOLE

        if self.kind == "object":
            out = generate_object_scene(
                self.output_dir,
                seed=self.seed,
                resolution=self.resolution,
                num_train=self.num_train,
                num_val=self.num_val,
                num_test=self.num_test,
                overwrite=self.overwrite,
            )
            hint = f"ns-train plenoxels blender-data --data {out}"
        else:
            out = generate_capture_scene(
                self.output_dir,
                kind="360" if self.kind == "capture-360" else "forward",
                seed=self.seed,
                width=self.width,
                height=self.height,
                num_frames=self.num_frames,
                overwrite=self.overwrite,
            )
            hint = f"ns-train nerfacto nerfstudio-data --data {out}"
        CONSOLE.print(f"[green]Scene written to {out}[/green]")
        CONSOLE.print(f"Train on it:  {hint}")


@dataclass
class Demo:
    """The main job on the embedded capture-like scene: train a teacher with ns-train, convert it to
    another architecture (pvd-al, data-free), compress it into one .ncz file, and write one picture
    (ground truth | teacher | converted | compressed) and a table. About 7-10 minutes on 2 CPU cores."""

    output_dir: Path = Path("outputs/nerfconvert-demo")
    """Everything goes here: the scene, the nerfstudio runs, demo_result.png."""
    seed: int = 0
    """Scene seed."""
    width: int = 64
    height: int = 48
    num_frames: int = 40
    teacher_method: str = "tensorf-unbounded"
    """The teacher's method (the best teacher this CPU trains in about three minutes; nerfacto works too)."""
    teacher_steps: int = 250
    to: str = "nerfacto"
    """The architecture to convert to (one of the view registry's pvd-al students)."""
    compress: Literal["vq", "entropy"] = "vq"
    """How to compress the teacher (vq-compression, or entropy-compression for a teacher with feature planes)."""
    steps: int = 120
    """pvd-al steps."""
    compress_steps: int = 100
    """Compression fine-tuning steps."""
    teacher_rays_per_batch: int = 1024
    """Rays per step of the teacher and of the compression."""
    num_rays_per_batch: int = 512
    """Rays per step of the conversion."""

    def main(self) -> None:
        from nerfconvert.demo import run_demo

        run_demo(self.output_dir, seed=self.seed, width=self.width, height=self.height, num_frames=self.num_frames,
                 teacher_method=self.teacher_method, teacher_steps=self.teacher_steps, to=self.to,
                 compress=self.compress, steps=self.steps, compress_steps=self.compress_steps,
                 teacher_rays_per_batch=self.teacher_rays_per_batch, num_rays_per_batch=self.num_rays_per_batch)


@dataclass
class Describe:
    """Load a trained run and print its two-level view (phi1 / phi2)."""

    load_config: Path
    """The run's config.yml."""
    device: Optional[str] = None
    """cpu or cuda (default: cuda when available)."""

    def main(self) -> None:
        import torch

        from nerfstudio.utils.rich_utils import CONSOLE
        from nerfconvert.views import load_run

        pipeline, view = load_run(self.load_config, device=self.device)
        n_phi1 = sum(p.numel() for p in view.phi1_parameters())
        n_phi2 = sum(p.numel() for p in view.phi2_parameters())
        CONSOLE.print(f"model      {type(pipeline.model).__name__}")
        CONSOLE.print(f"view       {view}")
        CONSOLE.print(f"phi1       {n_phi1:,} parameters -> {view.feature_dim} features")
        CONSOLE.print(f"phi2       {n_phi2:,} parameters")
        CONSOLE.print(f"device     {view.device} (CUDA available: {torch.cuda.is_available()})")


def demo_command() -> type:
    """``Demo`` for the command line, with ``--to``'s choices read from the view registry as it stands."""
    from nerfconvert.convert import to_choices

    to = Literal[to_choices()]  # type: ignore[valid-type]
    return dataclasses.make_dataclass("Demo", [("to", to, dataclasses.field(default=Demo.to))], bases=(Demo,),
                                      namespace={"__doc__": Demo.__doc__})


def commands():
    """The subcommands; choices that name families are read from the view registry when the command runs."""
    return Union[
        Annotated[Scene, tyro.conf.subcommand("scene")],
        Annotated[demo_command(), tyro.conf.subcommand("demo")],
        Annotated[Describe, tyro.conf.subcommand("describe")],
        Annotated[convert_command(), tyro.conf.subcommand("convert")],
        Annotated[Inspect, tyro.conf.subcommand("inspect")],
        Annotated[Decompress, tyro.conf.subcommand("decompress")],
        Annotated[View, tyro.conf.subcommand("view")],
        Annotated[DistillNerfPredict, tyro.conf.subcommand("distillnerf-predict")],
        Annotated[DistillNerfTeachers, tyro.conf.subcommand("distillnerf-teachers")],
    ]


def main(argv: Optional[list] = None) -> None:
    # Deprecation notices from torch/nerfstudio internals say nothing to our users.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message="Using a non-tuple sequence")
    command = tyro.cli(commands(), args=argv)
    from nerfconvert import compat

    compat.install()  # the command is an entry point: nerfstudio runs with our patches (compat's ledger)
    try:
        command.main()
    except NerfconvertError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
