"""The libraries' private internals this program relies on, all in this one module: where no public API does the
job, the private one is used here and nowhere else, and tests/test_internals.py fails first when a library update
moves or changes one of them.

- Keras: building a model from an .h5 file's config without allocating a weight (load_model offers no way to look
  at a model file before its weights are read): keras.src's legacy saving and its record of uninitialised variables.
- Keras: the counters of EarlyStopping and ReduceLROnPlateau (`wait`, `best`, `best_epoch`, `cooldown_counter`:
  attributes their docs do not list), carried over by --resume (BackupAndRestore keeps only weights, optimizer, epoch).
- mtcnn 1.0: its three networks (`stage._model`), run as tf.functions instead of op by op.
- argparse: HelpFormatter._get_help_string, the documented way to change which defaults --help shows (the
  formatter classes' only API is their names, per the argparse docs)."""

import argparse

from emotion.io.lazy_import import LazyModule

keras = LazyModule("keras")
tf = LazyModule("tensorflow")

CALLBACK_COUNTERS = ("wait", "best", "best_epoch", "cooldown_counter")  # EarlyStopping's, ReduceLROnPlateau's


def model_from_h5_config(config):
    """The model an .h5 file's model_config describes, built as load_model builds it but with no weight allocated
    (variables left uninitialised, and forgotten afterwards: this model is only looked at), in safe mode: no code stored
    in the file is run."""
    from keras.src.backend.common import global_state  # where Keras keeps variables it has not initialised
    from keras.src.legacy.saving import saving_options, saving_utils  # what load_model does with an .h5 file
    from keras.src.saving import serialization_lib
    pending = global_state.get_global_attribute("uninitialized_variables", [], set_to_default=True)
    known = len(pending)
    try:
        with keras.StatelessScope(initialize_variables=False), saving_options.keras_option_scope(
                use_legacy_config=True), serialization_lib.SafeModeScope(True):  # as load_model(safe_mode=True)
            return saving_utils.model_from_config(config)
    finally:
        del pending[known:]  # never initialised later, by another scope


def callback_counters(callback):
    """{name: value} of the CALLBACK_COUNTERS an EarlyStopping or ReduceLROnPlateau has (each has its own few)."""
    return {name: getattr(callback, name) for name in CALLBACK_COUNTERS if hasattr(callback, name)}


def set_callback_counters(callback, counters):
    """Set back what callback_counters returned; call it after the callback's on_train_begin, which resets them."""
    for name, value in counters.items():
        setattr(callback, name, value)


def compile_mtcnn(mtcnn):
    """mtcnn 1.0 runs its three networks eagerly, op by op; as tf.functions (traced once per input shape, then
    generalised) they give the same boxes for less CPU (docs/performance.md)."""
    for stage in mtcnn.stages:
        stage._model = tf.function(stage._model, reduce_retracing=True)
    return mtcnn


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help with each option's default, but none for flags and for options whose default is "not given"."""

    def _get_help_string(self, action):
        if action.default is None or (action.nargs == 0 and not isinstance(action, argparse.BooleanOptionalAction)):
            return action.help
        return super()._get_help_string(action)
