"""TensorFlow and Keras imported on first use, with TensorFlow's start-up lines kept off the console: importing
TensorFlow takes seconds that --help, prepare or a wrong path never need. (matplotlib and scikit-learn are
imported inside the few functions that use them.)"""

import importlib
import os
import sys
import tempfile

HIDDEN_LINES = ("WARNING: All log messages before absl::InitializeLog()", "I0000 ",
                "To enable the following instructions")


class LazyModule:
    """A module imported (quietly) when one of its attributes is first read.

    Not the standard library's importlib.util.LazyLoader: it hides the start-up lines just as well, but with
    TensorFlow and Keras both lazy, TensorFlow's own import of keras._tf_keras runs Keras' __init__ inside
    TensorFlow's, which then finds TensorFlow empty and leaves Keras half-built ("module 'keras' has no
    attribute 'utils'"). Importing the real module on first use keeps Python's own import order.
    """

    def __init__(self, name):
        self._name, self._module = name, None

    def __getattr__(self, attribute):
        if self._module is None:
            self._module = import_quietly(self._name)
        return getattr(self._module, attribute)


def import_quietly(name):
    """Import a module with TensorFlow's start-up lines, which it prints straight to file descriptor 2 before any
    logging is set up ("... absl::InitializeLog()", "I0000 ... oneDNN custom operations are on"), left out of
    stderr; every other line is passed on."""
    sys.stderr.flush()
    saved_fd = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            return importlib.import_module(name)
        finally:
            sys.stderr.flush()
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                if not line.startswith(HIDDEN_LINES):
                    sys.stderr.write(line)
