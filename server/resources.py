"""Where the page's templates and static files are, installed or in a checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def web_dir(name: str) -> Path:
    """`templates` or `static`: bundled into the wheel under server/_web, or the checkout's."""
    bundled = _PACKAGE / "_web" / name
    if bundled.is_dir():
        return bundled
    return _PACKAGE.parent / name
