import os

import pytest


def pytest_collection_modifyitems(config, items):
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return
    skip = pytest.mark.skip(reason="GUI tests need a display: run them with `make test` (uses xvfb-run)")
    for item in items:
        if "tests/app" in str(item.fspath):
            item.add_marker(skip)
