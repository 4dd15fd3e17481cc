"""The Grafana dashboards of dashboards/, as code: one module per dashboard, built with
grafana-foundation-sdk (typed builders generated from Grafana's own schema).

Not part of the exporter package: it is only needed to write the JSON, which Grafana
provisions as it is (`make dashboards`; a test fails when the committed JSON differs).
"""
