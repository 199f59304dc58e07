"""Airflow DAGs: daily estimates refresh, daily expiry sweep, redelivery."""

from i2es_hub.orchestration import housekeeping_dags

globals().update(housekeeping_dags())
