"""The generated reference pages (docs/metrics.md, docs/alerts.md) are what `make docs` writes now."""

from __future__ import annotations

from tools.docs_gen import PAGES, alerts_page, metrics_page, plain, stale_pages


def test_the_committed_reference_pages_are_the_generated_ones():
    assert stale_pages() == [], "a metric definition or an alert rule changed: run `make docs` and commit docs/"


def test_every_metric_and_alert_is_on_its_page():
    from exporter.serving.metric_defs import METRICS

    metrics = metrics_page()
    assert all(f"| `{m.name}` |" in metrics for m in METRICS)
    import yaml
    from tools.docs_gen import _rule_files

    alerts = alerts_page()
    names = [r["alert"] for path in _rule_files() for g in yaml.safe_load(path.read_text())["groups"]
             for r in g["rules"] if "alert" in r]
    assert len(names) > 20
    assert all(f"### {name}\n" in alerts for name in names)
    assert set(PAGES) == {"metrics.md", "alerts.md"}


def test_annotations_read_without_their_template():
    assert plain('{{ $labels.hotkey }} lost it{{ with query "x" }} at block {{ . | first | value }}{{ else }}, '
                 'block unknown{{ end }}.') == "HOTKEY lost it at block …."
    assert plain("{{ $sw := -1.0 }}{{ with query \"q\" }}{{ $sw = 1 }}{{ end -}} down by {{ $value | humanize }}") \
        == "down by VALUE"
