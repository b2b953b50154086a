"""Print the installed distributions as ``name==version`` pins for requirements.lock (the project itself left out).

Run by ``make lock`` inside a scratch venv that installed ``.[dev,package]`` from pyproject.toml alone.
"""

from __future__ import annotations

import importlib.metadata as md
import platform
import sys

SKIP = {"cellcounter", "pip", "setuptools", "wheel"}


def main() -> int:
    pins = {}
    for dist in md.distributions():
        name = (dist.metadata["Name"] or "").strip()
        if name and name.lower() not in SKIP:
            pins[name.lower()] = f"{name}=={dist.version}"
    print("# requirements.lock: what `make test` and CI tested; `make venv` and `make package` install these.")
    print(f"# Written by `make lock` (scripts/freeze_lock.py) on Python {platform.python_version()}, "
          f"{sys.platform}-{platform.machine()}. Refresh on purpose; see docs/install.md.")
    for key in sorted(pins):
        print(pins[key])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
