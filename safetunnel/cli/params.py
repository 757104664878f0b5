"""Reusable click parameter types."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from safetunnel.durations import DurationError, parse_duration

if TYPE_CHECKING:
    _IntParam = click.ParamType[int, Any]
    _StrParam = click.ParamType[str, Any]
else:  # click < 8.5 is not generic at runtime; pyproject allows click >= 8.1
    _IntParam = click.ParamType
    _StrParam = click.ParamType


class DurationParam(_IntParam):
    """A duration such as ``90s``, ``30m``, ``1h30m``; converts to whole seconds (int).

    A bad value is a click usage error (exit 2) naming the option, like any other bad argument.
    """

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value  # a default given in seconds is already converted
        try:
            return parse_duration(str(value))
        except DurationError as err:
            self.fail(str(err), param, ctx)


DURATION = DurationParam()


class LocalAddressParam(_StrParam):
    """PORT, ``127.0.0.1:PORT`` or ``[::1]:PORT``: a bad one is a usage error (exit 2)."""

    name = "port"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from safetunnel.errors import ConfigError
        from safetunnel.sharing.preflight import parse_local

        try:
            parse_local(str(value))
        except ConfigError as err:
            self.fail(err.message + (f" ({err.hint})" if err.hint else ""), param, ctx)
        return str(value)
