"""TensorFlow and Keras imported on first use, by the standard library's LazyLoader, with TensorFlow's
start-up lines kept off the console: importing TensorFlow takes seconds that --help, prepare or a wrong
path never need. (matplotlib and scikit-learn are imported inside the few functions that use them.)"""

import importlib.abc
import importlib.util
import os
import sys
import tempfile

HIDDEN_LINES = ("WARNING: All log messages before absl::InitializeLog()", "I0000 ", "To enable the following instructions")


class QuietLoader(importlib.abc.Loader):
    """Another module's loader, run with file descriptor 2 captured. TensorFlow prints its start-up lines
    ("... absl::InitializeLog()", "I0000 ... oneDNN custom operations are on") straight there, before any
    logging is set up; those are dropped, every other line is passed on."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        module.__spec__.loader = module.__loader__ = self.loader  # afterwards the module is as if imported plainly
        sys.stderr.flush()
        saved_fd = os.dup(2)
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 2)
            try:
                self.loader.exec_module(module)
            finally:
                sys.stderr.flush()
                os.dup2(saved_fd, 2)
                os.close(saved_fd)
                captured.seek(0)
                for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                    if not line.startswith(HIDDEN_LINES):
                        sys.stderr.write(line)


def lazy_import(name):
    """The top-level module `name`, imported quietly when one of its attributes is first read."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    spec.loader = importlib.util.LazyLoader(QuietLoader(spec.loader))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
