"""The FastAPI application: routes under ``/v1``, one pipeline per process."""

from __future__ import annotations

import logging
import threading
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from sqlalchemy.engine import Engine

from i2es_hub import __version__, store
from i2es_hub.api import documents, errors, inbox

if TYPE_CHECKING:
    from i2es_hub.ingest import Pipeline

log = logging.getLogger(__name__)

DESCRIPTION = """\
The hub's REST API for national systems: upload import and export authorizations,
endorsements and cancellations (canonical XML, singly or in batches), validate
without submitting, download what is addressed to your country, acknowledge it,
follow delivery status and read your estimate balances.

Every request carries a country's bearer token (`i2es-hub tokens create --country CC`)
and is confined to that country: you may submit only documents your country issues
and read only what is addressed to it or what it issued. Every error body says what
failed, where, and what to do.
"""


class HubState:
    """What the routes share: the database and the ingest pipeline.

    The pipeline reads the reference data when first needed, so an application
    can be built before the database is migrated.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pipeline: Pipeline | None = None
        self._lock = threading.Lock()
        # SQLite takes one writer at a time and makes the others sleep and poll,
        # which turns into long tail latencies under concurrent uploads; queueing
        # this process's writers on a lock hands the database over at once.
        # PostgreSQL locks rows, so writers run side by side.
        self.write_lock: AbstractContextManager[Any] = (
            threading.Lock() if store.is_sqlite(engine) else nullcontext()
        )

    @property
    def pipeline(self) -> Pipeline:
        """The ingest pipeline, built on first use."""
        with self._lock:
            if self._pipeline is None:
                from i2es_hub.ingest import Pipeline

                self._pipeline = Pipeline(self.engine)
            return self._pipeline


def create_app(engine: Engine | None = None) -> FastAPI:
    """Build the API application.

    Args:
        engine: The hub database; the configured one (``I2ES_HUB_DATABASE_URL``)
            when None.
    """
    # Keyed by URL, so a changed I2ES_HUB_DATABASE_URL is honoured.
    engine = engine or store.get_engine(store.database_url())
    app = FastAPI(
        title="i2es-hub API",
        version=__version__,
        description=DESCRIPTION,
        openapi_url="/v1/openapi.json",
        docs_url="/v1/docs",
        redoc_url=None,
    )
    app.state.engine = engine
    app.state.hub = HubState(engine)
    errors.install(app)
    app.include_router(documents.router)
    app.include_router(inbox.router)
    log.debug("API application built on %s", engine.url.render_as_string(True))
    return app
