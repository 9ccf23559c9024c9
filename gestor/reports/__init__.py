"""Reports and statistics over every worker and node (issue 12, DESIGN D12): the background
fold of the movements' report facts into hourly rollups, and the rendering of a report's rows
as CSV or as a terminal table. The SQL is in `gestor.store` (`Store.reports`)."""

from gestor.reports._folder import ReportFolder
from gestor.reports._render import COLUMNS, csv_text, table_text

__all__ = ["COLUMNS", "ReportFolder", "csv_text", "table_text"]
