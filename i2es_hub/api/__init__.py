"""The hub's REST API for national systems (FastAPI).

``create_app`` builds the application; ``i2es-hub serve`` runs it under uvicorn and
:mod:`i2es_hub.api.airflow_plugin` mounts it in Airflow's API server. FastAPI is
imported only when the application is built, so the CLI stays quick to start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from i2es_hub.api.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from i2es_hub.api.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
