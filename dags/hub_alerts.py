"""Airflow DAG: push alerts as soon as an ingest run announces them (asset)."""

from i2es_hub.orchestration import alert_dag

dag = alert_dag()
