"""Airflow DAG factory: one DAG per connector file in the connectors folder.

Each connector file gets a small generated DAG module in dags/connectors/ so that a
broken file breaks only its own DAG. Until that module exists (first parse after a
file is added), this factory builds the DAG itself.
"""

from pathlib import Path

from i2es_hub.orchestration import fallback_connector_dags

globals().update(fallback_connector_dags(Path(__file__).resolve().parent))
