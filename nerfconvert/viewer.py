"""``nerfconvert view scene.ncz``: open a compressed scene in the nerfstudio web viewer.

The file is decoded into a temporary run (``decompress``) and served by nerfstudio's own
``ns-viewer`` code, with a GUI field saying which method and size is on screen."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import tyro


def describe_size(num_bytes: int) -> str:
    if num_bytes >= 1 << 20:
        return f"{num_bytes / (1 << 20):.2f} MiB"
    return f"{num_bytes / 1024:.1f} KiB"


@dataclass
class View:
    """Open a .ncz in the nerfstudio web viewer (decoded into a temporary run, removed on exit)."""

    path: tyro.conf.Positional[Path]
    """The .ncz file."""
    data: Optional[Path] = None
    """The scene's data directory (default: the one recorded in the file). The viewer shows its cameras."""
    websocket_port: Optional[int] = None
    """Viewer port (default: a free one from 7007 up, as ns-viewer)."""
    websocket_host: str = "0.0.0.0"
    """Interface the viewer listens on."""
    max_num_display_images: int = 512
    """Training images shown as camera thumbnails (-1: all, 0: none), as ns-viewer's --viewer.max-num-display-images."""

    def main(self) -> None:
        view(self.path, self.data, self.websocket_port, self.websocket_host, self.max_num_display_images)


def view(path: Path, data: Optional[Path] = None, websocket_port: Optional[int] = None,
         websocket_host: str = "0.0.0.0", max_num_display_images: int = 512) -> None:
    from nerfconvert.compress.container import read_ncz

    path = Path(path)
    ncz = read_ncz(path)  # a bad file is the container's one-line error, before any viewer starts
    info = f"{ncz.method}, {describe_size(path.stat().st_size)} ({path.name})"

    from nerfstudio.configs.base_config import ViewerConfig
    from nerfstudio.scripts.viewer.run_viewer import _start_viewer
    from nerfstudio.utils.eval_utils import eval_setup
    from nerfstudio.viewer.viewer_elements import ViewerText

    from nerfconvert.compress.cli import decompress

    workdir = Path(tempfile.mkdtemp(prefix="nerfconvert-view-"))
    try:
        config_path = decompress(path, workdir, data=data, timestamp="view")
        config, pipeline, _, step = eval_setup(config_path, eval_num_rays_per_chunk=None, test_mode="test")
        # nerfstudio's viewer installs every ViewerElement it finds on the pipeline into its GUI panel
        pipeline.nerfconvert_showing = ViewerText(
            name="Showing", default_value=info, disabled=True, hint="Method and size of the compressed file"
        )
        num_rays_per_chunk = config.viewer.num_rays_per_chunk
        config.vis = "viewer"
        config.viewer = ViewerConfig(websocket_port=websocket_port, websocket_host=websocket_host,
                                     num_rays_per_chunk=num_rays_per_chunk,
                                     max_num_display_images=max_num_display_images)
        print(f"Showing {info}")
        _start_viewer(config, pipeline, step)  # ns-viewer's own loop; returns only on Ctrl-C
    except KeyboardInterrupt:
        pass
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
