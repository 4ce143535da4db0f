"""The browser harness: a viewer process (stock ``ns-viewer``, ``nerfconvert view`` or ``ns-train --vis
viewer``) on a free port, the page opened in headless Debian Chromium through Selenium, and the
rendered frame read back from a screenshot.

How a rendered frame is recognised: nerfstudio's viewer starts one render loop per connected
browser (``Viewer.handle_new_client``); the page sends its camera on connect, and every frame the
loop sends (``RenderStateMachine._send_output_to_viewer`` -> ``set_background_image``) also rewrites
the "Resolution: WxHpx" line of the stats panel (it reads 0x0px until then). Once the static
high-resolution frame (``max_res`` on its long side) is announced, the screenshot shows it."""

from __future__ import annotations

import io
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import contextlib

import numpy as np
import pytest
from processes import bin_, start_group, stop_group  # noqa: F401 (bin_ re-exported)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WINDOW = (640, 480)
MAX_RES = 256  # "Max res", set on the page (nerfstudio's default 512 is slow on a CPU): the static frame's long side
# Per-pixel standard deviation (0..255, over the scene part of the canvas) below which a frame
# counts as blank or uniform. Measured 2026-11-21: a constant-colour model 0.89 (JPEG rounding);
# the tests' real renders 5.3 (the live pvd-al student, zoomed far out) to 57; 3 sits between.
MIN_PIXEL_STD = 3.0
RESULTS = Path(os.environ.get("NERFCONVERT_VIEWER_RESULTS", Path(tempfile.gettempdir()) / "nerfconvert-viewer-results"))

missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]

# viser's page draws its three.js scene on every animation frame, in software here (no GPU): an idle
# viewer page took 1.5 CPU-seconds a second, most of a 2-core machine, away from the viewer under test
# (measured 2026-12-02: 0.1 at this rate). The page draws the same pictures at ten frames a second.
FRAMES_PER_SECOND = 10
THROTTLED_ANIMATION_FRAMES = (
    "(() => { const next = window.requestAnimationFrame.bind(window);"
    " window.requestAnimationFrame = (callback) =>"
    f" next(() => setTimeout(() => callback(performance.now()), {1000 // FRAMES_PER_SECOND})); }})();"
)


@contextlib.contextmanager
def chromium():
    """Headless Chromium with the environment's flags and a fresh profile; the page, not the
    window, is WINDOW in size, and draws at most FRAMES_PER_SECOND animation frames a second."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="nerfconvert-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": WINDOW[0], "height": WINDOW[1], "deviceScaleFactor": 1, "mobile": False})
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": THROTTLED_ANIMATION_FRAMES})
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
needs_browser = pytest.mark.skipif(
    bool(missing), reason=f"{' and '.join(missing)} not installed (apt-get install -y chromium chromium-driver)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def frustum_pixels(shown: np.ndarray, hidden: np.ndarray) -> int:
    """Pixels that the hard-pose frustums (red, (230, 40, 40)) add to a frame: the same view with them
    shown and hidden differs only where they are drawn, and there the shown frame leans red. Their
    lines are one pixel wide and anti-aliased, so a fixed colour threshold alone misses most of them;
    the scene's own red objects are in both frames and cancel out."""
    a, b = shown.astype(np.int32), hidden.astype(np.int32)
    changed = np.abs(a - b).sum(axis=-1) > 30
    reddish = a[:, 0] - np.maximum(a[:, 1], a[:, 2]) > 30
    return int((changed & reddish).sum())


class BlankRender(AssertionError):
    """The viewer's frame is blank or uniform."""


@dataclass
class Frame:
    screenshot: np.ndarray  # [H, W, 3] uint8, the whole page
    scene: np.ndarray  # the canvas part that shows the render (panel and axes gizmo cut away)
    path: Path

    @property
    def pixel_std(self) -> float:
        return float(self.scene.astype(np.float64).reshape(-1, 3).std(axis=0).max())


def check_not_blank(frame: Frame, threshold: float = MIN_PIXEL_STD) -> None:
    if frame.pixel_std <= threshold:
        raise BlankRender(
            f"the viewer's frame is blank/uniform: pixel std {frame.pixel_std:.2f} <= {threshold} ({frame.path})"
        )


class ViewerProcess:
    def __init__(self, command: List[str], log_path: Path, env: Optional[dict] = None):
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.proc = start_group(command, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def wait_for_page(self, url: str, timeout: float = 300) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert self.proc.poll() is None, "the viewer exited:\n" + self.log_tail()
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise AssertionError(f"no page at {url} after {timeout:.0f} s:\n" + self.log_tail())

    def stop(self) -> None:
        stop_group(self.proc)
        self._log.close()


class Page:
    """One viewer page in the shared browser."""

    def __init__(self, driver, url: str):
        from selenium.webdriver.common.by import By

        self.driver, self.url, self.By = driver, url, By
        self.max_res = MAX_RES  # the static frame's long side, once prepare_view has set it
        driver.get(url)

    def text(self) -> str:
        return self.driver.find_element(self.By.TAG_NAME, "body").text

    def input_values(self) -> List[str]:
        return [e.get_attribute("value") or "" for e in self.driver.find_elements(self.By.TAG_NAME, "input")]

    def resolution(self) -> tuple:
        match = re.search(r"Resolution: (\d+)x(\d+)px", self.text().replace("×", "x"))
        return (int(match.group(1)), int(match.group(2))) if match else (0, 0)

    def wait_for(self, predicate, what: str, timeout: float = 180, process: Optional[ViewerProcess] = None):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if process is not None:
                assert process.proc.poll() is None, "the viewer exited:\n" + process.log_tail()
            value = predicate()
            if value:
                return value
            time.sleep(0.3)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; page:\n{self.text()[:500]}"
                             + ("\n" + process.log_tail() if process else ""))

    def input_showing(self, current: str, what: str):
        """The visible viser input whose value is ``current``, scrolled into view."""
        return self.wait_for(
            lambda: self.driver.execute_script(
                "for (const el of document.querySelectorAll('input')) { if (el.value === arguments[0] && el.type !== 'hidden') {"
                " el.scrollIntoView({block: 'center'}); return el; } } return null;", current),
            f"{what} showing {current!r}", timeout=20)

    def select(self, current: str, option: str) -> None:
        """In the viser dropdown that now shows ``current``, pick ``option``."""
        box = self.input_showing(current, "a dropdown")
        box.click()
        self.wait_for(
            lambda: self.driver.find_elements(self.By.XPATH, f"//*[@role='option' and normalize-space(.)='{option}']"),
            f"the option {option!r}", timeout=20)[0].click()
        self.rest_pointer()

    def set_checkbox(self, label: str, checked: bool) -> None:
        """Tick or untick the viser checkbox in the row labelled ``label``."""
        box = self.wait_for(
            lambda: self.driver.execute_script(
                "for (const el of document.querySelectorAll('*')) {"
                "  if (el.children.length === 0 && el.textContent.trim() === arguments[0]) {"
                "    for (let row = el.parentElement; row; row = row.parentElement) {"
                "      const box = row.querySelector('input[type=checkbox]');"
                "      if (box) { box.scrollIntoView({block: 'center'}); return box; } } } } return null;", label),
            f"the checkbox {label!r}", timeout=20)
        if box.is_selected() != checked:
            self.driver.execute_script("arguments[0].click();", box)
        self.wait_for(lambda: box.is_selected() == checked, f"{label!r} {'ticked' if checked else 'unticked'}", timeout=20)

    def set_number(self, current: str, value: str) -> None:
        """Type ``value`` into the viser number field that now shows ``current``."""
        from selenium.webdriver.common.keys import Keys

        box = self.input_showing(current, "a field")
        box.click()
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(value, Keys.ENTER)

    def scene_box(self):
        """(x0, y0, x1, y1) of the canvas that is not covered by the control panel."""
        return self.driver.execute_script(
            """
            const c = document.querySelector('canvas').getBoundingClientRect();
            let right = c.right;
            for (const el of document.querySelectorAll('button')) {
              if (el.innerText.includes('Hide Train Cams') || el.innerText.includes('Show Train Cams')) {
                right = Math.min(right, el.getBoundingClientRect().left - 10);
              }
            }
            return [c.left, c.top, right, c.bottom];
            """
        )

    def rest_pointer(self) -> tuple:
        """Move the mouse to the middle of the scene, off the panel (its last tooltip closes)."""
        from selenium.webdriver.common.actions.action_builder import ActionBuilder

        x0, y0, x1, y1 = self.scene_box()
        centre = int((x0 + x1) / 2), int((y0 + y1) / 2)
        pointer = ActionBuilder(self.driver)
        pointer.pointer_action.move_to_location(*centre)
        pointer.perform()
        return centre

    def zoom_out(self, clicks: int) -> None:
        """Wheel over the scene: the camera starts 0.5 scene units from the origin, inside the object."""
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.actions.wheel_input import ScrollOrigin

        origin = ScrollOrigin.from_viewport(*self.rest_pointer())
        wheel = ActionChains(self.driver)  # one round trip to the driver for all the clicks, 50 ms apart
        for _ in range(clicks):
            wheel.scroll_from_origin(origin, 0, 200).pause(0.05)
        wheel.perform()

    def mark(self) -> None:
        """Start recording every frame resolution the stats panel shows from now on."""
        self.driver.execute_script(
            """
            window.__resolutions = [];
            if (window.__observer) window.__observer.disconnect();
            window.__observer = new MutationObserver(() => {
              const m = document.body.innerText.match(/Resolution: (\\d+)\\D(\\d+)px/);
              if (m) window.__resolutions.push([+m[1], +m[2]]);
            });
            window.__observer.observe(document.body, {subtree: true, childList: true, characterData: true});
            """
        )

    def wait_for_static_frame(self, process: Optional[ViewerProcess] = None, timeout: float = 180) -> None:
        """The render loop has sent the full-resolution frame (after ``mark()``: of the view changed
        since; a change first gives low-resolution frames, then the static frame at ``max_res``)."""

        def done():
            seen = self.driver.execute_script("return window.__resolutions")  # None: not marked
            moved = seen is None or any(self.max_res not in r for r in seen)
            return moved and self.max_res in self.resolution()

        self.wait_for(done, "the full-resolution frame", timeout, process)
        time.sleep(1.5)  # the browser decodes the JPEG and draws it on its next animation frame

    def capture(self, name: str) -> Frame:
        from PIL import Image

        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{name}.png"
        png = self.driver.get_screenshot_as_png()
        path.write_bytes(png)
        image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        x0, y0, x1, y1 = (int(round(v)) for v in self.scene_box())
        scene = image[y0:y1, x0:x1].copy()
        gizmo = 90  # the axes gizmo in the bottom-left corner of viser's canvas is not the render
        scene = np.concatenate([scene[:-gizmo].reshape(-1, 3), scene[-gizmo:, gizmo:].reshape(-1, 3)])
        return Frame(image, scene, path)


def prepare_view(page: Page, process: ViewerProcess, zoom_clicks: int = 10, timeout: float = 300,
                 max_res: int = MAX_RES) -> None:
    """"Max res" set (``max_res``), the camera moved out, a first frame shown. The viewer command must draw no train
    cameras (``--viewer.max-num-display-images 0``: their thumbnails are not the render). Clicking "Hide
    Train Cams" instead is a race: the panel is up before the viewer's init_scene has made the cameras,
    and a click then raises inside viser's atomic() and leaves its lock held: the viewer stops rendering."""
    page.wait_for(lambda: "Hide Train Cams" in page.text(), "the viewer's panel", timeout, process)
    page.set_number("512", str(max_res))
    page.max_res = max_res
    # the camera starts 0.5 scene units from the origin, inside the object: move it out before the
    # render loop's full-resolution frame, so that every frame from here on sees the object
    page.zoom_out(zoom_clicks)
    page.wait_for(lambda: page.resolution()[0] > 0, "the first rendered frame", timeout, process)


def render_screenshot(page: Page, process: ViewerProcess, name: str) -> Frame:
    """Wait for the full-resolution frame of the current camera, screenshot it."""
    page.wait_for_static_frame(process)
    return page.capture(name)
