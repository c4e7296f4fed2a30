"""The one exception type that reaches the user as a single line.

Code raises :class:`UserError` for anything the user can fix (bad input, unknown session,
missing series). The command line prints ``popdecode: error: <message>`` and exits with
status 2; every other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input, stated as what is wrong and how to fix it."""
