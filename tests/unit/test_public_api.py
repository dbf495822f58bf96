"""The public API: every name in ``tidings.__all__`` imports, lazily, and nothing else."""

from __future__ import annotations

import subprocess
import sys

import tidings


def test_every_exported_name_resolves_and_is_listed_once() -> None:
    exported = set(tidings.__all__) - {"__version__"}
    assert exported == set(tidings._EXPORTS)
    assert len(tidings.__all__) == len(set(tidings.__all__))
    for name in exported:
        assert getattr(tidings, name) is not None, name


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        _ = tidings.NoSuchThing  # type: ignore[attr-defined]
    except AttributeError as error:
        assert "NoSuchThing" in str(error)
    else:
        raise AssertionError("expected AttributeError")


def test_importing_tidings_or_its_cli_loads_neither_sqlalchemy_nor_pydantic() -> None:
    probe = (
        "import sys, tidings, tidings.cli.app; "
        "heavy = [m for m in ('sqlalchemy', 'pydantic', 'asyncio') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""


def test_from_causality_import_gives_each_exported_name_not_a_submodule() -> None:
    """A lazily exported name that is also a submodule's (``audit``) would be replaced by
    the submodule as soon as it is imported: ``from tidings.causality import audit``."""
    probe = (
        "import pkgutil, types, tidings.causality as c; "
        "[__import__(f'tidings.causality.{m.name}') for m in pkgutil.iter_modules(c.__path__)]; "
        "from tidings.causality import *; "
        "print(','.join(n for n in c.__all__ if isinstance(getattr(c, n), types.ModuleType)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""


def test_the_persistence_package_exports_its_tables_not_modules_of_their_names() -> None:
    from sqlalchemy import Table

    from tidings.persistence import inbox, outbox, publication_log

    assert all(isinstance(table, Table) for table in (inbox, outbox, publication_log))
