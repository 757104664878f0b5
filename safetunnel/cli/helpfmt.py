"""How ``--help`` lists subcommands: each summary whole, wrapped, never cut with "...".

click cuts a summary to fit one line; ours are a sentence or two and lose their point when cut.
"""

from __future__ import annotations

import click

NO_CUT = 10_000  # a summary limit no summary reaches: click then returns it whole


class FullHelpGroup(click.Group):
    """A group whose ``--help`` lists each subcommand's whole summary (``hosts``, ``creds``)."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows: list[tuple[str, str]] = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(NO_CUT)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
