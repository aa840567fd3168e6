"""The program's exceptions: problems the user can fix. A program using the library catches `EmotionError` (or one
of its kinds); the command line prints each as one line ("error: ...") with a non-zero exit, never a traceback."""


class EmotionError(Exception):
    """Every problem this package reports: the message is one line that says what to do."""


class UserError(EmotionError):
    """A problem the user can fix (a bad path or option, a full disk, a mismatched data set)."""


class ImageError(UserError):
    """An image refused: not an image, a truncated file, too large, an array of the wrong shape or type."""


class ModelError(UserError):
    """A model file refused: missing, damaged, hostile (code inside, absurd sizes) or not this program's."""


class ArgumentError(UserError, ValueError):
    """A bad argument to a call of the library (an unknown class, detector or channel order)."""
