"""Mount the hub API in Airflow 3's API server, next to the Airflow UI.

Register this module as an Airflow plugin (the ``airflow.plugins`` entry point
``i2es_hub = i2es_hub.api.airflow_plugin:I2esHubPlugin``, or a file in the
plugins folder that imports :class:`I2esHubPlugin`). The API is then served under
``/i2es``: ``/i2es/v1/documents``, ``/i2es/v1/openapi.json`` and so on.

Limitations: Airflow's own authentication does not cover plugin applications;
the hub API authenticates every request itself with country tokens. The
application is built when Airflow loads its plugins, with the database named by
``I2ES_HUB_DATABASE_URL``.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from i2es_hub.api import create_app

URL_PREFIX = "/i2es"


class I2esHubPlugin(AirflowPlugin):
    """Serves the i2es-hub API from Airflow's API server under ``/i2es``."""

    name = "i2es_hub"
    fastapi_apps = [
        {"app": create_app(), "url_prefix": URL_PREFIX, "name": "i2es-hub API"}
    ]
