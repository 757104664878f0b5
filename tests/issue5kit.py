"""Old import path of three e2e helpers, kept while test files of other areas still import it.

The helpers live in e2e.py; new code imports them from there.
"""

from e2e import env_without_agent, share_started, stop

__all__ = ["env_without_agent", "share_started", "stop"]
