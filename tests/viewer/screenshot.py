"""Screenshot a run in the web viewer with the test harness (headless Chromium, stock ns-viewer):

    python tests/viewer/screenshot.py <run>/config.yml assets/viewer/<name>.png [--zoom-clicks 10]
    python tests/viewer/screenshot.py <run>/scene.ncz assets/viewer/<name>.png    # nerfconvert view

Used for the README's Viewing section; prints the frame's pixel standard deviation."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # tests/: processes.py

from browser_harness import Page, ViewerProcess, bin_, chromium, check_not_blank, free_port, prepare_view, render_screenshot  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--zoom-clicks", type=int, default=10)
    args = parser.parse_args()

    port = free_port()
    if args.config.suffix == ".ncz":  # a compressed file alone, through `nerfconvert view`
        command = [bin_("nerfconvert"), "view", str(args.config), "--websocket-port", str(port),
                   "--websocket-host", "127.0.0.1", "--max-num-display-images", "0"]
    else:
        command = [bin_("ns-viewer"), "--load-config", str(args.config), "--viewer.websocket-port", str(port),
                   "--viewer.websocket-host", "127.0.0.1", "--viewer.max-num-display-images", "0"]
    process = ViewerProcess(command, Path(tempfile.mkdtemp()) / "viewer.log")
    try:
        with chromium() as driver:
            url = f"http://127.0.0.1:{port}/"
            process.wait_for_page(url)
            page = Page(driver, url)
            prepare_view(page, process, args.zoom_clicks)
            frame = render_screenshot(page, process, args.output.stem)
            check_not_blank(frame)
            args.output.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(frame.path, args.output)
            print(f"{args.output}: pixel std {frame.pixel_std:.1f}")
    finally:
        process.stop()

if __name__ == "__main__":
    main()
