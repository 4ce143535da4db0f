"""Fixtures of the browser harness (``browser_harness.py``): one headless Chromium per module."""

from __future__ import annotations

from typing import List, Optional

import pytest

from browser_harness import Page, ViewerProcess, chromium, free_port, missing, prepare_view


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
    free port) started, its page open, train cameras hidden, the camera moved out, a first frame shown."""
    started: List[ViewerProcess] = []

    def _open(command: List[str], name: str, env: Optional[dict] = None, timeout: float = 300, zoom_clicks: int = 10):
        port = free_port()
        process = ViewerProcess([part.replace("{port}", str(port)) for part in command],
                                tmp_path / f"{name}.log", env=env)
        started.append(process)
        url = f"http://127.0.0.1:{port}/"
        process.wait_for_page(url, timeout)
        page = Page(browser, url)
        prepare_view(page, process, zoom_clicks, timeout)
        return process, page

    yield _open
    for process in started:
        process.stop()
