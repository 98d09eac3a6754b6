"""Files the package ships (prompt templates, taxonomies, migrations), found through importlib.resources
so that a wheel or a container install finds them as an editable checkout does."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def package_dir(package: str, *parts: str) -> Path:
    """The folder of a package's data files. Installed packages live on a file system (pip and the
    images unpack wheels), so the Traversable is a real path; a zipped install is refused clearly."""
    root = files(package).joinpath(*parts)
    if not isinstance(root, Path):
        raise RuntimeError(f"{package} is installed in an archive ({root}); install triage unzipped")
    return root


def builtin_prompts_dir() -> Path:
    return package_dir("prompts")


def builtin_taxonomies_dir() -> Path:
    return package_dir("server", "taxonomies")


def migrations_dir() -> Path:
    return package_dir("server.store", "migrations")
