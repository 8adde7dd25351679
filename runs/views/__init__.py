"""Studio pages, one module per area: lists.py (workspaces, experiments, run lists, views),
run_detail.py (one run and its tabs), charts.py (chart data and compare pages)."""
