"""docs/grafana/zkpy-dashboard.json queries only metrics zkpy exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from zk_harness import T0, connected

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana" / "zkpy-dashboard.json"
# PromQL words in the dashboard's expressions that are no metric names.
_PROMQL = {"rate", "increase", "sum", "by", "instance", "quantile", "key", "le"}


def _queried_names() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    names: set[str] = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = re.sub(r'"[^"]*"', '""', target["expr"])  # label values
            expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors
            names.update(w for w in re.findall(r"[a-z_][a-z0-9_]*", expr) if w not in _PROMQL)
    return names


def test_every_metric_the_dashboard_queries_is_exported() -> None:
    metrics = pytest.importorskip("zkpy.net.metrics")
    from prometheus_client.exposition import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from zkpy.net.host import SystemHost
    from zkpy.server.core import CoreSettings
    from zkpy.testing.standalone import standalone

    core = standalone(CoreSettings(), T0, host=SystemHost()).core  # (file descriptors)
    a = connected(core)
    a.create("/d", b"x")
    a.get("/d")
    collector = metrics.ZooKeeperCollector(core)
    described = {m.name for m in collector.describe()}
    text = generate_latest(metrics.make_registry(core, export_process_info=False)).decode()
    samples = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    queried = _queried_names()
    assert len(queried) > 40
    for name in sorted(queried):
        family = name if name in described else re.sub(r"_(sum|count)$", "", name)
        assert family in described, f"the dashboard queries {name}, which zkpy never exports"
        if family not in metrics.ROLE_GAUGES:  # a leader's gauges: not on a standalone server
            assert name in samples, f"{name} is not in a standalone server's exposition"


def test_the_dashboard_imports_as_grafana_lays_it_out() -> None:
    """What Grafana needs to import it on any Prometheus data source: the data
    source is a template variable every query uses, panel ids and each panel's
    refIds are unique, and the panels fit the 24-column grid without overlapping."""
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    source = {"type": "prometheus", "uid": "${datasource}"}
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        assert panel["datasource"] == source, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(set(refs)) == len(refs), panel["title"]
        assert all(t["datasource"] == source for t in panel["targets"]), panel["title"]
        g = panel["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, panel["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine
