"""Training within a time budget (--time-budget MINUTES): the run ends at the last epoch that fits, and a cosine
learning rate decays over the time the run will take, re-estimated from the epochs' measured speed."""

import math
import time

import keras


class TimeBudget(keras.callbacks.Callback):
    """Stop before an epoch that would end past `minutes`; with `cosine`, set the learning rate each step to
    initial * (1 + cos(pi * progress)) / 2, progress being the larger of the time spent over the predicted
    end of training and the steps done over the --epochs limit."""

    def __init__(self, minutes, initial_rate, epochs, cosine=True):
        super().__init__()
        self.seconds, self.initial_rate, self.epochs, self.cosine = minutes * 60, initial_rate, epochs, cosine
        self.started = self.epoch_started = self.epoch_seconds = None
        self.expected_end = self.seconds  # from the start to the end of the last epoch that fits, once one is timed
        self.epochs_done = 0

    def on_train_begin(self, logs=None):
        self.started = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        if not self.cosine:
            return
        steps = self.params.get("steps") or 1
        by_time = (time.perf_counter() - self.started) / self.expected_end
        by_steps = (self.epochs_done * steps + batch) / (self.epochs * steps)
        progress = min(1.0, max(by_time, by_steps))
        self.model.optimizer.learning_rate.assign(self.initial_rate * (1 + math.cos(math.pi * progress)) / 2)

    def on_epoch_end(self, epoch, logs=None):
        self.epochs_done += 1
        elapsed = time.perf_counter() - self.started
        self.epoch_seconds = time.perf_counter() - self.epoch_started  # the latest: the first one also traces
        if elapsed + self.epoch_seconds > self.seconds and not self.model.stop_training:
            self.model.stop_training = True
            done = f"{self.epochs_done} epoch{'s' * (self.epochs_done != 1)}"
            print(f"Time budget: {done} in {elapsed / 60:.1f} of {self.seconds / 60:g} minutes; another epoch "
                  f"(about {self.epoch_seconds / 60:.1f} min) would not fit")
        else:  # at the latest epoch's pace
            self.expected_end = elapsed + math.floor((self.seconds - elapsed) / self.epoch_seconds) * self.epoch_seconds
