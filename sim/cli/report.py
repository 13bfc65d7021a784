"""``capsim report DIR``: print a finished results folder again and re-render its
report.html (``--open`` opens it in the default browser).

Works on the folders of ``run``, ``sweep``, ``plan``, ``breakeven`` and ``compare`` (see
:mod:`sim.report.folder`); ``--format`` prints the report as a table, JSON, CSV or
Markdown. Nothing is simulated again.
"""

from __future__ import annotations

import click

from sim.cli.common import format_option, handle_errors

__all__ = ["report_command"]


@click.command("report")
@click.argument("folder", type=click.Path(file_okay=False))
@format_option()
@click.option("--open", "open_browser", is_flag=True,
              help="Open report.html in the default web browser.")
@click.option("--no-html", is_flag=True, help="Do not re-render report.html.")
@handle_errors
def report_command(folder: str, fmt: str, open_browser: bool, no_html: bool) -> None:
    """Print the results in FOLDER again and re-render FOLDER/report.html.

    \b
    Examples:
      capsim report results/seed-70b-hybrid-20261205-120000
      capsim report results/plan-default-1a2b3c --format markdown
    """
    import webbrowser  # (startup speed: see sim.cli)

    from rich.console import Console

    from sim.report.document import render
    from sim.report.folder import load_folder_report, rewrite_html

    report, summary = load_folder_report(folder)
    render(report, fmt, Console())
    if not no_html or open_browser:
        path = rewrite_html(folder, report, summary)
        if fmt == "table":
            click.echo(f"report written to {path}", err=True)
        if open_browser:
            webbrowser.open(path.resolve().as_uri())
