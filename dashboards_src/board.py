"""A dashboard: its settings, variables, links and panels laid out row by row, and its JSON.

Every dashboard has the same frame: a `datasource` variable (any Prometheus), an `instance`
variable (the exporters to read, all by default; every query filters on it), tag
`bittensor` and a drop-down of the other Bittensor dashboards. Panels flow left to right
in rows of 24 columns.
"""

from __future__ import annotations

import json
from typing import Optional, Sequence

from grafana_foundation_sdk.builders import dashboard as builders
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as models

from dashboards_src.panels import DATASOURCE, PanelBuilder

INSTANCE_DESCRIPTION = (
    "Exporter instances to read. Two exporters scraped under one job (an HA pair) export the same series; "
    "every panel takes the maximum over the instances picked, so the numbers are those of one."
)
WIDTH = 24


def datasource_variable() -> builders.DatasourceVariable:
    return builders.DatasourceVariable("datasource").label("Data source").type("prometheus")


def query_variable(name: str, label: str, query: str, description: str = "", regex: str = "",
                   sort: models.VariableSort = models.VariableSort.ALPHABETICAL_ASC, multi: bool = False,
                   all_value: Optional[str] = None, include_all: bool = False) -> builders.QueryVariable:
    """A variable whose options a Prometheus query gives (label_values() or query_result()),
    refreshed with the time range. ``all_value``: what "All" stands for (default: every option)."""
    variable = (builders.QueryVariable(name).label(label).datasource(DATASOURCE)
                .query({"query": query, "refId": "StandardVariableQuery"}).refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
                .regex(regex).sort(sort).multi(multi).include_all(include_all or all_value is not None))
    if description:
        variable = variable.description(description)
    if all_value is not None:
        variable = variable.all_value(all_value)
    return variable


def instance_variable() -> builders.QueryVariable:
    # No allValue: "All" is the regex of the exporters offered, so the generic series of
    # other jobs' targets (up, process_*) never join in.
    return query_variable("instance", "Exporter", "label_values(bittensor_exporter_up, instance)",
                          INSTANCE_DESCRIPTION, multi=True, include_all=True)


def link(title: str, uid: str, tooltip: str, query: str = "", include_vars: bool = False) -> builders.DashboardLink:
    """A link to another dashboard that keeps the time range; ``query``: URL parameters it carries."""
    url = f"/d/{uid}/{uid}" + (f"?{query}" if query else "")
    return (builders.DashboardLink(title).type(models.DashboardLinkType.LINK).url(url).icon("dashboard")
            .tooltip(tooltip).include_vars(include_vars).keep_time(True).as_dropdown(False).target_blank(False))


def detail_url(hotkey: str, netuid: str = "") -> str:
    """The validator-detail page for a table row, with this page's data source, exporters and time range;
    without ``netuid``, the page picks the hotkey's first subnet."""
    subnet = f"&var-netuid={netuid}" if netuid else ""
    return ("/d/bittensor-validator-detail/bittensor-validator-detail?${datasource:queryparam}&${instance:queryparam}"
            f"&var-hotkey={hotkey}{subnet}&${{__url_time_range}}")


def field(name: str) -> str:
    """A table row's value of column ``name`` in a data link."""
    return '${__data.fields["' + name + '"]}'


def _other_dashboards() -> builders.DashboardLink:
    return (builders.DashboardLink("Bittensor dashboards").type(models.DashboardLinkType.DASHBOARDS).tags(["bittensor"])
            .as_dropdown(True).include_vars(True).keep_time(True).icon("external link").target_blank(False).url(""))


class Board:
    """A dashboard being built: panels are placed as they are added."""

    def __init__(self, uid: str, title: str, description: str, variables: Sequence[builders.QueryVariable] = (),
                 links: Sequence[builders.DashboardLink] = ()) -> None:
        self._builder = (builders.Dashboard(title).uid(uid).description(description).tags(["bittensor"])
                         .timezone("browser").editable().tooltip(models.DashboardCursorSync.CROSSHAIR)
                         .refresh("1m").time("now-24h", "now").timepicker(builders.TimePicker()).annotations([])
                         .with_variable(datasource_variable()).with_variable(instance_variable()))
        for variable in variables:
            self._builder = self._builder.with_variable(variable)
        self._builder = self._builder.links([*links, _other_dashboards()])
        self._x = self._y = self._line_height = 0

    def _newline(self) -> None:
        self._y += self._line_height
        self._x = self._line_height = 0

    def row(self, title: str, *panels: PanelBuilder) -> "Board":
        """A row header across the dashboard, then ``panels`` left to right (wrapping at 24 columns)."""
        self._newline()
        self._builder = self._builder.with_row(builders.Row(title).grid_pos(models.GridPos(h=1, w=WIDTH, x=0, y=self._y)))
        self._y += 1
        for panel in panels:
            self.add(panel)
        return self

    def add(self, panel: PanelBuilder) -> None:
        size = panel.build().grid_pos
        if self._x + size.w > WIDTH:
            self._newline()
        self._builder = self._builder.with_panel(panel.grid_pos(models.GridPos(h=size.h, w=size.w, x=self._x, y=self._y)))
        self._x += size.w
        self._line_height = max(self._line_height, size.h)

    def build(self) -> models.Dashboard:
        dashboard = self._builder.build()
        for number, panel in enumerate(dashboard.panels or [], start=1):
            panel.id_val = number  # unique, in reading order
        return dashboard


def to_json(dashboard: models.Dashboard) -> str:
    """The JSON Grafana provisions, as committed in dashboards/."""
    return json.dumps(dashboard, cls=JSONEncoder, indent=2, ensure_ascii=False) + "\n"
