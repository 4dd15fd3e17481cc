"""The panel kinds the dashboards use, built with grafana-foundation-sdk's typed builders.

Every panel reads Prometheus through the dashboard's `datasource` variable; graphs and stats
query a range, tables an instant (format table). A panel's size is its width and height on
Grafana's 24-column grid; `dashboard.Board` places it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import histogram, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as models
from grafana_foundation_sdk.models.prometheus import PromQueryFormat, QueryEditorMode

DATASOURCE = models.DataSourceRef(type_val="prometheus", uid="${datasource}")
REF_IDS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# (value, color): a threshold step; the first one's value is None (from minus infinity).
Steps = Sequence[tuple[Optional[float], str]]
# value -> (text, color): what a value shows as.
Mapping = dict[str, tuple[str, str]]


@dataclass(frozen=True)
class Style:
    """How a value shows: unit, decimals, value mappings, threshold colours.
    ``cell``: a table column coloured by its thresholds or mappings (color-text);
    ``no_value``: what shows instead of Grafana's "No data" when there is none (an empty state that is the normal one)."""

    unit: Optional[str] = None
    decimals: Optional[int] = None
    mappings: Optional[Mapping] = None
    steps: Optional[Steps] = None
    cell: bool = False
    links: Optional[Sequence[tuple[str, str]]] = None  # (title, url) data links of a table column
    no_value: Optional[str] = None


@dataclass(frozen=True)
class Query:
    """One PromQL query of a panel, with its legend (graphs) or column header (tables)."""

    expr: str
    legend: str = "__auto"


@dataclass(frozen=True)
class Column:
    """A value column of a table: its header, query and style. Label columns are plain names."""

    header: str
    expr: str
    style: Style = field(default_factory=Style)


def _steps(steps: Steps) -> dashboard_builders.ThresholdsConfig:
    return dashboard_builders.ThresholdsConfig().mode(models.ThresholdsMode.ABSOLUTE).steps(
        [models.Threshold(value=value, color=color) for value, color in steps])


def _mappings(mapping: Mapping) -> list[models.ValueMapping]:
    return [models.ValueMap(options={value: models.ValueMappingResult(text=text, color=color)
                                     for value, (text, color) in mapping.items()})]


def _color(mode: models.FieldColorModeId) -> dashboard_builders.FieldColor:
    return dashboard_builders.FieldColor().mode(mode)


def target(expr: str, ref_id: str, legend: str = "__auto", instant: bool = False) -> prometheus.Dataquery:
    query = (prometheus.Dataquery().expr(expr).ref_id(ref_id).legend_format(legend)
             .editor_mode(QueryEditorMode.CODE).datasource(DATASOURCE))
    return query.instant().format(PromQueryFormat.TABLE) if instant else query.range().format(PromQueryFormat.TIME_SERIES)


def _queries(queries: Union[str, Query, Sequence[Union[str, Query]]]) -> list[Query]:
    if isinstance(queries, (str, Query)):
        queries = [queries]
    return [q if isinstance(q, Query) else Query(q) for q in queries]


def _common(panel, title: str, description: str, width: int, height: int, style: Style, by_value: bool = True):
    """Title, description, data source, size and the defaults of ``style`` (any panel builder);
    ``by_value``: coloured by thresholds or mappings when it has them (not graphs: a colour per series)."""
    panel = panel.title(title).description(description).datasource(DATASOURCE).span(width).height(height)
    if style.unit is not None:
        panel = panel.unit(style.unit)
    if style.decimals is not None:
        panel = panel.decimals(style.decimals)
    if style.mappings:
        panel = panel.mappings(_mappings(style.mappings))
    if style.no_value is not None:
        panel = panel.no_value(style.no_value)
    panel = panel.thresholds(_steps(style.steps or [(None, "green")]))
    colored = by_value and (bool(style.steps and len(style.steps) > 1) or bool(style.mappings))
    return panel.color_scheme(_color(models.FieldColorModeId.THRESHOLDS if colored else models.FieldColorModeId.PALETTE_CLASSIC))


def stat_panel(title: str, description: str, queries, width: int = 4, height: int = 4, style: Style = Style(),
               text: common_models.BigValueTextMode = common_models.BigValueTextMode.AUTO,
               graph: bool = False) -> stat.Panel:
    """A big number: the last value of each query."""
    panel = _common(stat.Panel(), title, description, width, height, style)
    for ref_id, query in zip(REF_IDS, _queries(queries)):
        panel = panel.with_target(target(query.expr, ref_id, query.legend))
    return (panel.reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False))
            .color_mode(common_models.BigValueColorMode.VALUE)
            .graph_mode(common_models.BigValueGraphMode.AREA if graph else common_models.BigValueGraphMode.NONE)
            .justify_mode(common_models.BigValueJustifyMode.AUTO).text_mode(text).wide_layout(True).show_percent_change(False))


def graph_panel(title: str, description: str, queries, width: int = 12, height: int = 8, style: Style = Style(),
                axis_label: str = "", bars: bool = False, stacked: bool = False, minimum: Optional[float] = None,
                threshold_lines: bool = False) -> timeseries.Panel:
    """Time series of each query, with a legend table of last values."""
    panel = _common(timeseries.Panel(), title, description, width, height, style, by_value=False)
    for ref_id, query in zip(REF_IDS, _queries(queries)):
        panel = panel.with_target(target(query.expr, ref_id, query.legend))
    if minimum is not None:
        panel = panel.min(minimum)
    panel = (panel.draw_style(common_models.GraphDrawStyle.BARS if bars else common_models.GraphDrawStyle.LINE)
             .fill_opacity(60 if bars else 10).line_width(1).show_points(common_models.VisibilityMode.NEVER)
             .span_nulls(False).axis_label(axis_label).axis_placement(common_models.AxisPlacement.AUTO)
             .stacking(common_builders.StackingConfig().group("A").mode(
                 common_models.StackingMode.NORMAL if stacked else common_models.StackingMode.NONE)))
    if threshold_lines:
        panel = panel.thresholds_style(common_builders.GraphThresholdsStyleConfig().mode(common_models.GraphThresholdsStyleMode.LINE))
    return (panel.legend(common_builders.VizLegendOptions().display_mode(common_models.LegendDisplayMode.TABLE)
                         .placement(common_models.LegendPlacement.BOTTOM).show_legend(True).calcs(["lastNotNull"]))
            .tooltip(common_builders.VizTooltipOptions().mode(common_models.TooltipDisplayMode.MULTI)
                     .sort(common_models.SortOrder.DESCENDING)))


def histogram_panel(title: str, description: str, expr: str, bucket_size: float, width: int = 12, height: int = 8,
                    style: Style = Style()) -> histogram.Panel:
    """The distribution of an instant query's values."""
    panel = _common(histogram.Panel(), title, description, width, height, style)
    return (panel.with_target(target(expr, "A", instant=True)).bucket_size(bucket_size)  # type: ignore[arg-type]
            .bucket_offset(0).combine(False).fill_opacity(80).line_width(1)
            .legend(common_builders.VizLegendOptions().display_mode(common_models.LegendDisplayMode.LIST)
                    .placement(common_models.LegendPlacement.BOTTOM).show_legend(False)))


def _override(style: Style) -> list[models.DynamicConfigValue]:
    """A table column's style as the properties of an override by name."""
    properties = []
    if style.unit is not None:
        properties.append(models.DynamicConfigValue(id_val="unit", value=style.unit))
    if style.decimals is not None:
        properties.append(models.DynamicConfigValue(id_val="decimals", value=style.decimals))
    if style.mappings:
        properties.append(models.DynamicConfigValue(id_val="mappings", value=_mappings(style.mappings)))
    if style.cell:
        properties.append(models.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"}))
    if style.steps:
        properties.append(models.DynamicConfigValue(id_val="color", value={"mode": "thresholds"}))
        properties.append(models.DynamicConfigValue(id_val="thresholds", value=_steps(style.steps).build()))
    if style.links:
        properties.append(models.DynamicConfigValue(id_val="links", value=[{"title": t, "url": u} for t, u in style.links]))
    return properties


def table_panel(title: str, description: str, labels: Sequence[str], columns: Sequence[Column], width: int = 24,
                height: int = 8, style: Style = Style(), sort_by: Optional[tuple[str, bool]] = None,
                label_styles: Optional[dict[str, Style]] = None, renames: Optional[dict[str, str]] = None) -> table.Panel:
    """Label columns then one column per query (instant, merged on the labels), renamed to their headers.

    ``labels``: the label columns shown, in order; ``renames``: label -> header; ``sort_by``: (header, descending).
    """
    panel = _common(table.Panel(), title, description, width, height, style)
    for ref_id, column in zip(REF_IDS, columns):
        panel = panel.with_target(target(column.expr, ref_id, instant=True))
    values = ["Value"] if len(columns) == 1 else [f"Value #{r}" for r in REF_IDS[:len(columns)]]
    names = list(labels) + values
    headers = {label: (renames or {}).get(label, label) for label in labels}
    headers.update({value: column.header for value, column in zip(values, columns)})
    if len(columns) > 1:
        panel = panel.with_transformation(models.DataTransformerConfig(id_val="merge", options={}))
    panel = (panel.with_transformation(models.DataTransformerConfig(id_val="filterFieldsByName", options={"include": {"names": names}}))
             .with_transformation(models.DataTransformerConfig(id_val="organize", options={
                 "excludeByName": {}, "renameByName": headers, "indexByName": {name: i for i, name in enumerate(names)}})))
    panel = panel.align(common_models.FieldTextAlignment.AUTO).cell_options(common_models.TableAutoCellOptions()).filterable(True)
    for label, label_style in (label_styles or {}).items():
        panel = panel.override_by_name(headers[label], _override(label_style))
    for column in columns:
        if _override(column.style):
            panel = panel.override_by_name(column.header, _override(column.style))
    panel = (panel.show_header(True).cell_height(common_models.TableCellHeight.SM)
             .footer(common_builders.TableFooterOptions().show(False).reducer(["sum"]).fields("")))
    if sort_by is not None:
        panel = panel.sort_by([common_builders.TableSortByFieldState().display_name(sort_by[0]).desc(sort_by[1])])
    return panel


def row(title: str) -> dashboard_builders.Row:
    return dashboard_builders.Row(title)


PanelBuilder = Builder[models.Panel]
# What a stat shows besides the value: the series name (legend) instead, or both.
NAME = common_models.BigValueTextMode.NAME
VALUE_AND_NAME = common_models.BigValueTextMode.VALUE_AND_NAME
