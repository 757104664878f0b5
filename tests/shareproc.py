"""Old import path of the process drivers, kept while test files of other areas still import it.

The drivers live in e2e.py; new code imports them from there.
"""

from e2e import SCRIPT, ShareProcess, run

__all__ = ["SCRIPT", "ShareProcess", "run"]
