"""User-facing errors.

Every problem a user can fix (bad config, unknown data set, n out of range, corrupt record...)
is raised as :class:`UserError` with a one-line message naming the problem and the fix. The CLI
prints it as ``transferbench: error: <message>`` and exits with status 2; nothing else is shown.
"""


class UserError(Exception):
  """A problem in the user's input, with a one-line message that says how to fix it."""
