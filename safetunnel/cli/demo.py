"""``safetunnel demo``: serve a tiny page and share it through the built-in gateway for 5 min."""

from __future__ import annotations

import sys

import click

from safetunnel.cli.console import ConsoleUI
from safetunnel.cli.share import serve
from safetunnel.sharing import options
from safetunnel.sharing.demo import DemoServer
from safetunnel.sharing.request import ShareRequest


@click.command("demo")
@click.option("--json", "as_json", is_flag=True, help="One JSON event per line on stdout.")
def demo_command(as_json: bool) -> None:
    """Serve a demo page on 127.0.0.1:62893 and share it for 5 minutes through this machine."""
    server = DemoServer()
    try:
        ui = ConsoleUI(as_json=as_json)
        ui.say(
            f"Serving a demo page on 127.0.0.1:{server.port}; sharing it through the "
            "built-in gateway (reachable only from this machine) for 5 minutes."
        )
        request = ShareRequest(
            local=server.port, ttl=options.DEMO_TTL, yes=True, builtin_gateway=True
        )
        code = serve(request, ui)
    finally:
        server.close()
    sys.exit(code)
