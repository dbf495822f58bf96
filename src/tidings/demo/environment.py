"""Where the demo's contexts keep their data: databases per context and one broker."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tidings.domain.ids import uuid7

CONTEXTS = ("identity", "catalog", "basket", "ordering", "payments", "inventory", "notifications")


def configure(folder: Path, *, database: str | None, broker: str | None) -> dict[str, str]:
    """Environment variables the example contexts read, for this process and its children.

    SQLite files in ``folder`` by default; with a server URL, one fresh database per
    context on that server. Consumer groups get a per-run suffix on a real broker so
    that leftovers of an earlier run are never mixed into this one.
    """
    folder.mkdir(parents=True, exist_ok=True)
    env = {"TIDINGS_DEMO_DIR": str(folder)}
    env["TIDINGS_DEMO_BROKER"] = broker or f"sqlite:///{folder / 'broker.db'}"
    if broker:
        env["TIDINGS_DEMO_GROUP_SUFFIX"] = f"-demo-{uuid7().hex[-8:]}"
    for name in CONTEXTS:
        env[f"TIDINGS_DEMO_DATABASE_{name.upper()}"] = (
            _fresh_server_database(database, f"tidings_demo_{name}")
            if database
            else f"sqlite:///{folder / name}.db"
        )
    os.environ.update(env)
    return env


def _fresh_server_database(server_url: str, name: str) -> str:
    url = make_url(server_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        raise ValueError("--database takes a server URL (postgresql://…); SQLite is the default")
    driver = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg"}.get(
        backend, "mysql+pymysql"
    )
    admin = create_engine(url.set(drivername=driver), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        if driver.startswith("postgresql"):
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        else:
            connection.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
            connection.execute(text(f"CREATE DATABASE `{name}`"))
    admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)
