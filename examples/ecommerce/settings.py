"""Where each context's database and the broker are, from the environment.

``tidings demo`` sets these for the processes it starts; by default everything lives
in SQLite files under ``.tidings-demo/`` (the embedded broker included).
"""

from __future__ import annotations

import os
from pathlib import Path


def demo_dir() -> Path:
    folder = Path(os.environ.get("TIDINGS_DEMO_DIR", ".tidings-demo"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def database_url(context: str) -> str:
    """``TIDINGS_DEMO_DATABASE_<CONTEXT>`` or a SQLite file in the demo folder."""
    return os.environ.get(f"TIDINGS_DEMO_DATABASE_{context.upper()}") or (
        f"sqlite:///{demo_dir() / context}.db"
    )


def consumer_group(context: str) -> str:
    """The context's subscription name (the demo suffixes it per run on real brokers)."""
    return context + os.environ.get("TIDINGS_DEMO_GROUP_SUFFIX", "")


def broker_url() -> str:
    """``TIDINGS_DEMO_BROKER`` or the embedded SQLite-file broker in the demo folder."""
    return os.environ.get("TIDINGS_DEMO_BROKER") or f"sqlite:///{demo_dir() / 'broker.db'}"
