"""Report: what people read: number formats, summary tables, plots.

Works on plain rows, summaries and Arrow tables, so it depends only on core and costs;
the experiment layer and above call it.
"""
