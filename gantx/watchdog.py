"""The loop's watchdog: a run that stops making progress says where it waits and exits.

On a pod every host waits inside a collective when one host stops entering it (stuck in its
data, a hung file system, a mismatched collective): no error, no output, the slice billed until
a person looks. JAX has no timeout for an alive but stuck peer (jax-ml/jax#38503), and XLA:CPU's
collective timeout is 30 minutes. So the loop beats the watchdog at every finished step; when no
step finishes for `limit()` seconds, every process writes what it waits for and the Python
stacks of all its threads, and exits with EXIT_CODE. The last checkpoint stays: the same command
resumes from it.

The limit is max(config.step_timeout_s, 10 x the median of the recent step times): far above a
normal step, and at least the configured minutes. Evaluations and checkpoints (long, and with
timeouts of their own) pause it.
"""

from __future__ import annotations

import collections
import contextlib
import faulthandler
import os
import statistics
import sys
import threading
import time
from typing import Callable

# EX_TEMPFAIL: a temporary failure; running the command again resumes.
EXIT_CODE = 75


class Watchdog:
  """Ends the process when no `beat()` comes for `limit()` seconds outside `paused()` blocks.

  Args:
    min_limit_s: the shortest limit (config.step_timeout_s); 0 turns the watchdog off.
    waiting_for: says, when the watchdog fires, what the loop waits for ('step 57; last
      checkpoint .../50').
    check_every_s: how often the thread looks.
  """

  def __init__(self, min_limit_s: float, waiting_for: Callable[[], str], check_every_s: float = 1.0):
    self.min_limit_s = float(min_limit_s)
    self._waiting_for = waiting_for
    self._last = time.monotonic()
    self._times: collections.deque[float] = collections.deque(maxlen=100)  # recent step times
    self._pauses = 0
    self._stop = threading.Event()
    self._thread = None
    if self.min_limit_s > 0:
      self._thread = threading.Thread(target=self._watch, args=(check_every_s,), name="gantx-watchdog", daemon=True)
      self._thread.start()

  def limit(self) -> float:
    """max(min_limit_s, 10 x the median recent step time)."""
    median = statistics.median(self._times) if self._times else 0.0
    return max(self.min_limit_s, 10.0 * median)

  def beat(self) -> None:
    """A step finished."""
    now = time.monotonic()
    if self._pauses == 0:
      self._times.append(now - self._last)
    self._last = now

  @contextlib.contextmanager
  def paused(self):
    """Work that is not a step (an evaluation, a checkpoint): not timed, and not a step time."""
    self._pauses += 1
    try:
      yield
    finally:
      self._pauses -= 1
      self._last = time.monotonic()

  def close(self) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join()

  def _watch(self, every: float) -> None:
    while not self._stop.wait(every):
      idle = time.monotonic() - self._last
      if self._pauses == 0 and idle > self.limit():
        self._fire(idle)

  def _fire(self, idle: float) -> None:
    import jax  # pylint: disable=g-import-not-at-top

    median = statistics.median(self._times) if self._times else float("nan")
    lines = [
        f"\ngantx watchdog: process {jax.process_index()} of {jax.process_count()}: no step finished for {idle:.0f} s"
        f" (the limit is max(config.step_timeout_s={self.min_limit_s:g}, 10 x the median step of {median:.3g} s)).",
        f"Waiting for {self._waiting_for()}.",
        "Another process is stuck or gone, or this one is (its data, a file system, a collective that the others"
        " did not enter). The Python stacks of every thread of this process follow.",
        f"Exiting with status {EXIT_CODE}: run the same command again to resume from the last checkpoint.\n"]
    sys.stderr.write("\n".join(lines))
    sys.stderr.flush()
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    sys.stderr.flush()
    os._exit(EXIT_CODE)  # the main thread may be inside a collective that never returns
