"""Alert rules and dashboards of the observability role, checked with the real promtool.

The rules file is a template whose only templated values are thresholds and durations
(with ``[[ ]]`` delimiters, declared in its ``#jinja2:`` header line so that Prometheus's own
``{{ $labels }}`` stay untouched). It is rendered here with the role defaults, exactly as
Ansible renders it, then:

- ``promtool check rules`` must accept it;
- ``promtool test rules`` must pass roles/observability/files/tests/vllm.rules.test.yml, which
  has a firing and a not-firing case for every alert, with input series named as vLLM,
  LiteLLM, node_exporter and the blackbox exporter name them;
- with thresholds pushed beyond the test data the firing cases must fail (the tests read the
  thresholds, they do not just pass);
- every panel query of the dashboards must parse (promtool check rules on a file of recording
  rules built from files/dashboards/panel_queries.json), and that list must match the
  dashboards.

Needs promtool (Debian/Ubuntu package ``prometheus``); skipped with that reason without it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest
import yaml

ROLE = Path(__file__).resolve().parents[2] / "roles" / "observability"
RULES_TEMPLATE = ROLE / "templates" / "rules" / "vllm.rules.yml.j2"
RULES_TESTS = ROLE / "files" / "tests" / "vllm.rules.test.yml"
DASHBOARDS = ROLE / "files" / "dashboards"
PROMTOOL = shutil.which("promtool")

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed (apt-get install prometheus; tests/harness/setup.sh should do it)",
)

# Metric names vLLM renamed or dropped (V0 engine); the rules and dashboards must not use them.
LEGACY_VLLM_METRICS = (
    "vllm:gpu_cache_usage_perc",
    "vllm:cpu_cache_usage_perc",
    "vllm:gpu_prefix_cache_hit_rate",
    "vllm:time_per_output_token_seconds",
    "vllm:num_requests_swapped",
    "vllm:avg_prompt_throughput_toks_per_s",
    "vllm:avg_generation_throughput_toks_per_s",
)


def role_defaults() -> dict:
    return yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())


def render_rules(overrides: dict | None = None) -> str:
    """Render the rules template like ansible.builtin.template does (same #jinja2 header)."""
    header, body = RULES_TEMPLATE.read_text().split("\n", 1)
    assert header.startswith("#jinja2:"), "the rules template must declare its delimiters"
    options = dict(re.findall(r"(\w+)\s*:\s*'([^']*)'", header[len("#jinja2:"):]))
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, **options)
    variables = role_defaults() | (overrides or {})
    return env.from_string(body).render(**variables)


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, check=False)


def write_rules(tmp_path: Path, overrides: dict | None = None) -> Path:
    (tmp_path / "vllm.rules.yml").write_text(render_rules(overrides))
    shutil.copy(RULES_TESTS, tmp_path / RULES_TESTS.name)
    return tmp_path


def alert_names(rules_text: str) -> list[str]:
    doc = yaml.safe_load(rules_text)
    return [r["alert"] for g in doc["groups"] for r in g["rules"] if "alert" in r]


def test_rules_template_only_templates_thresholds():
    variables = set(re.findall(r"\[\[\s*(\w+)", RULES_TEMPLATE.read_text()))
    assert variables - {"ansible_managed"}, "no thresholds found"
    assert all(v.startswith("observability_alert_") for v in variables - {"ansible_managed"}), variables


def test_rules_use_current_metric_names():
    text = render_rules()
    for name in LEGACY_VLLM_METRICS:
        assert name not in text, f"{name} is not exported by the vLLM versions this collection installs"
    for name in ("vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                 "vllm:time_to_first_token_seconds_bucket", "vllm:num_preemptions_total",
                 "litellm_proxy_total_requests_metric_total", "probe_ssl_earliest_cert_expiry"):
        assert name in text


def test_every_alert_has_firing_and_quiet_cases():
    names = alert_names(render_rules())
    cases = [c for t in yaml.safe_load(RULES_TESTS.read_text())["tests"] for c in t.get("alert_rule_test", [])]
    for name in names:
        mine = [c for c in cases if c["alertname"] == name]
        assert any(c.get("exp_alerts") for c in mine), f"{name}: no test case where it fires"
        assert any(not c.get("exp_alerts") for c in mine), f"{name}: no test case where it stays quiet"
    assert {c["alertname"] for c in cases} <= set(names), "tests name an alert the rules do not define"


@needs_promtool
def test_promtool_check_rules(tmp_path):
    write_rules(tmp_path)
    result = promtool("check", "rules", "vllm.rules.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_names(render_rules()))} rules found" in result.stdout


@needs_promtool
def test_promtool_test_rules(tmp_path):
    write_rules(tmp_path)
    result = promtool("test", "rules", RULES_TESTS.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
@pytest.mark.parametrize(
    ("variable", "value", "alert"),
    [
        ("observability_alert_waiting_requests", 100, "VllmRequestQueueHigh"),
        ("observability_alert_kv_cache_usage", 0.99, "VllmKvCacheNearlyFull"),
        ("observability_alert_ttft_p95_seconds", 5, "VllmTtftP95High"),
        ("observability_alert_engine_down_for", "15m", "VllmEngineDown"),
        ("observability_alert_preemptions_per_second", 2, "VllmPreemptionRateHigh"),
        ("observability_alert_gateway_5xx_ratio", 0.5, "GatewayHigh5xxRate"),
        ("observability_alert_cert_expiry_days", 7, "TlsCertificateExpiringSoon"),
        ("observability_alert_target_down_for", "15m", "ScrapeTargetDown"),
    ],
)
def test_thresholds_are_variables(tmp_path, variable, value, alert):
    write_rules(tmp_path, {variable: value})
    result = promtool("test", "rules", RULES_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0, f"raising {variable} did not silence {alert}"
    assert f"alertname: {alert}," in result.stdout + result.stderr


def dashboard_queries() -> list[dict]:
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        doc = json.loads(path.read_text())
        if "panels" not in doc:
            continue
        for panel in doc["panels"]:
            for target in panel.get("targets", []):
                found.append({"dashboard": path.name, "panel": panel["title"],
                              "ref_id": target["refId"], "expr": target["expr"]})
    return found


def test_panel_query_list_matches_dashboards():
    listed = json.loads((DASHBOARDS / "panel_queries.json").read_text())

    def key(q):
        return (q["dashboard"], q["panel"], q["ref_id"])

    listed_exprs = [{k: q[k] for k in ("dashboard", "panel", "ref_id", "expr")} for q in listed["queries"]]
    assert sorted(listed_exprs, key=key) == sorted(dashboard_queries(), key=key)
    for q in listed["queries"]:
        resolved = q["expr"]
        for variable, value in listed["substitutions"].items():
            resolved = resolved.replace(variable, value)
        assert resolved == q["expr_resolved"]
        assert "$" not in q["expr_resolved"], q


def test_dashboards_use_current_metric_names():
    exprs = " ".join(q["expr"] for q in dashboard_queries())
    for name in LEGACY_VLLM_METRICS:
        assert name not in exprs
    for name in ("vllm:generation_tokens_total", "vllm:time_to_first_token_seconds_bucket",
                 "vllm:inter_token_latency_seconds_bucket", "vllm:num_requests_waiting",
                 "vllm:kv_cache_usage_perc", "vllm:num_preemptions_total", "vllm:prefix_cache_hits_total",
                 "vllm:prefix_cache_queries_total", "nginx_http_requests_total",
                 "litellm_proxy_total_requests_metric_total", "node_cpu_seconds_total"):
        assert name in exprs, f"no panel shows {name}"


@needs_promtool
def test_panel_queries_parse(tmp_path):
    listed = json.loads((DASHBOARDS / "panel_queries.json").read_text())["queries"]
    rules = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"dashboard:query_{n}", "expr": q["expr_resolved"]} for n, q in enumerate(listed)]}]}
    (tmp_path / "queries.yml").write_text(yaml.safe_dump(rules))
    result = promtool("check", "rules", "queries.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
