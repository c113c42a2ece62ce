"""`dashboard`: the running gateway's web page, and a one-time link that logs a browser in."""
from __future__ import annotations

import typer

from broke.cli.output import JSON_OPTION, print_json, say, store


def dashboard(open_browser: bool = typer.Option(False, "--open", help="Open the one-time link in a browser."),
              as_json: bool = JSON_OPTION) -> None:
    """Print the dashboard's address and a one-time login link (valid one minute); `--open` opens it."""
    from broke.control.client import dashboard_link

    page, link = dashboard_link(store().home)
    if as_json:
        print_json({"url": page, "login_link": link})
    else:
        say(f"dashboard: {page}\none-time login link (valid 60 s): {link}\n"
            "[dim]or log in there with the client token from `broke connect`[/]")
    if open_browser:
        import webbrowser

        if not webbrowser.open(link):
            say("no browser found here; open the link above by hand")


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard)
