"""deploy/prometheus: the config and alert rules are valid, and each alert fires when and only when
its unit test says (promtool from Debian's `prometheus` package)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from tests.prometheus_tools import ensure_prometheus, exported_metrics, metric_names

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def test_config_and_rules_pass_promtool_check() -> None:
    _, promtool = ensure_prometheus()
    rules = subprocess.run(
        [promtool, "check", "rules", "alerts.yml"], cwd=DEPLOY, capture_output=True, text=True
    )
    assert rules.returncode == 0, rules.stdout + rules.stderr
    config = subprocess.run(
        [promtool, "check", "config", "prometheus.yml"], cwd=DEPLOY, capture_output=True, text=True
    )
    assert config.returncode == 0, config.stdout + config.stderr


def test_every_alert_has_a_promtool_unit_test_and_they_pass() -> None:
    _, promtool = ensure_prometheus()
    alerts = {
        r["alert"] for g in yaml.safe_load((DEPLOY / "alerts.yml").read_text())["groups"] for r in g["rules"]
    }
    tested = set(re.findall(r"alertname: (\w+)", (DEPLOY / "tests.yml").read_text()))
    assert alerts == tested
    result = subprocess.run(
        [promtool, "test", "rules", "tests.yml"], cwd=DEPLOY, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_name_only_metrics_the_services_export() -> None:
    """A renamed metric would leave an alert silent forever: every name an alert uses is exported."""
    exported = exported_metrics()
    used = metric_names((DEPLOY / "alerts.yml").read_text())
    assert used and used <= exported, used - exported
