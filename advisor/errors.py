"""The one exception type for mistakes a user can fix.

Front ends (CLI, Space) turn it into a one-line message (exit code 2 on the CLI) instead of a
traceback, so every message must say what is wrong *and* what to do about it.
"""


class UserError(Exception):
    """Bad input or an impossible request; the message is shown to the user verbatim."""
