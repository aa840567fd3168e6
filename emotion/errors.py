"""The program's one exception: a problem the user can fix, which the command line prints as one line
("error: ...") with a non-zero exit, never a traceback."""


class UserError(Exception):
    """A problem the user can fix (bad path, bad option, mismatched model): printed as one line."""
