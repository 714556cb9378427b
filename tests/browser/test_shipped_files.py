"""Every file of the browser client ships in the wheel: pyproject.toml's package data
for ``tether.client_static`` matches each of them (the vendored Markdown renderer and
sanitiser and their licences included)."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "client_static"


def test_the_package_data_covers_every_file_of_client_static() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["tether.client_static"]
    files = [p.relative_to(STATIC).as_posix() for p in STATIC.rglob("*") if p.is_file()]
    missing = [f for f in files if not any(fnmatch.fnmatchcase(f, p) for p in patterns)]
    assert not missing, f"not in the wheel: {missing}"
    for vendored in ("vendor/marked/marked.esm.js", "vendor/marked/LICENSE",
                     "vendor/dompurify/purify.es.mjs", "vendor/dompurify/LICENSE"):  # fmt: skip
        assert vendored in files
