"""The one exception type for mistakes a user can make (bad input, missing file, ...).

The CLI turns a :class:`UserError` into one line on stderr and exit code 2; the
message must say what is wrong and how to fix it.
"""


class UserError(Exception):
    """A problem the user can fix: bad config, unknown preset, missing data file, ..."""
