"""Fixtures of the browser harness (``browser_harness.py``): one headless Chromium per module."""

from __future__ import annotations

from typing import List, Optional

import pytest

from browser_harness import Page, ViewerProcess, chromium, free_port, missing, prepare_view

# The static frame's long side in the tests: the render is stretched over the page's canvas, so the
# checks read the same at a quarter of the rays of the README screenshots' 256 (measured 2026-12-02:
# pixel std within 0.1 of the 256 frame's for every run here; the pvd-al student's frame 4 s instead of
# 15 s on 2 CPU cores). Not for a far-away object: the live pvd-al student, a few pixels across after 24
# zoom clicks, lost 0.4 of its 3.5 pixel std at 128, too near the blank threshold (3).
TEST_MAX_RES = 128


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the whole module (the environment's flags, a fresh profile)."""
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (apt-get install -y chromium chromium-driver)")
    with chromium() as driver:
        yield driver


@pytest.fixture
def open_viewer(browser, tmp_path):
    """``open_viewer(command, name)`` -> (process, page): the viewer command (``{port}`` in it becomes a
    free port) started, its page open, train cameras hidden, the camera moved out, a first frame shown.
    Afterwards the browser leaves the page (a viewer page draws its scene all the time)."""
    started: List[ViewerProcess] = []

    def _open(command: List[str], name: str, env: Optional[dict] = None, timeout: float = 300, zoom_clicks: int = 10,
              max_res: int = TEST_MAX_RES):
        port = free_port()
        process = ViewerProcess([part.replace("{port}", str(port)) for part in command],
                                tmp_path / f"{name}.log", env=env)
        started.append(process)
        url = f"http://127.0.0.1:{port}/"
        process.wait_for_page(url, timeout)
        page = Page(browser, url)
        prepare_view(page, process, zoom_clicks, timeout, max_res=max_res)
        return process, page

    yield _open
    for process in started:
        process.stop()
    browser.get("about:blank")
