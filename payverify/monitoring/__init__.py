"""Monitoring for cron runs: the heartbeat, a payverify_runs row each, the node_exporter textfile."""

from payverify.monitoring.heartbeat import Heartbeat
from payverify.monitoring.metrics import Metric, collect_metrics, publish_metrics, render_metrics, write_metrics_file
from payverify.monitoring.runs import record_run_end, record_run_start

__all__ = ["Heartbeat", "Metric", "collect_metrics", "publish_metrics", "record_run_end", "record_run_start",
           "render_metrics", "write_metrics_file"]
