"""The loop's watchdog: a run that stops making progress says where it waits and exits.

On a pod every host waits inside a collective when one host stops entering it (stuck in its
data, a hung file system, a mismatched collective): no error, no output, the slice billed until
a person looks. JAX has no timeout for an alive but stuck peer (jax-ml/jax#38503), and XLA:CPU's
collective timeout is 30 minutes. So the loop beats the watchdog at every finished step; when no
step finishes for `limit()` seconds, the process writes what it waits for and the Python stacks
of all its threads, and exits with EXIT_CODE. The last checkpoint stays: the same command resumes
from it.

Every process does so, not only the first to notice: the first one's watchdog posts a key to the
coordination service and waits FIRE_GRACE_S before it exits, and every other watchdog looks for
that key at each check and fires at once (when a process exits, JAX soon ends the others with its
own fatal error, which says nothing of where they were).

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
FIRE_KEY = "gantx/watchdog_fired"  # coordination service key: the process whose watchdog fired first
FIRE_GRACE_S = 5.0  # the first process waits this long for the others to write theirs before exiting


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
        self._fire(idle, first=_post_fired())
      elif (peer := _peer_fired()) is not None:
        self._fire(idle, first=False, peer=peer)

  def _fire(self, idle: float, first: bool, peer: str | None = None) -> None:
    import jax  # pylint: disable=g-import-not-at-top

    median = statistics.median(self._times) if self._times else float("nan")
    why = (f"no step finished for {idle:.0f} s (the limit is max(config.step_timeout_s={self.min_limit_s:g}, 10 x the"
           f" median step of {median:.3g} s))") if peer is None else (
               f"the watchdog of process {peer} fired; no step finished here for {idle:.0f} s")
    lines = [
        f"\ngantx watchdog: process {jax.process_index()} of {jax.process_count()}: {why}.",
        f"Waiting for {self._waiting_for()}.",
        "Another process is stuck or gone, or this one is (its data, a file system, a collective that the others"
        " did not enter). The Python stacks of every thread of this process follow.",
        f"Exiting with status {EXIT_CODE}: run the same command again to resume from the last checkpoint.\n"]
    sys.stderr.write("\n".join(lines))
    sys.stderr.flush()
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    sys.stderr.flush()
    if first:  # the others look for the key at their next check: let them write theirs first
      time.sleep(FIRE_GRACE_S)
    os._exit(EXIT_CODE)  # the main thread may be inside a collective that never returns


def _client():
  """The coordination service's client of a multi-process run, else None."""
  import jax  # pylint: disable=g-import-not-at-top
  from jax._src import distributed  # pylint: disable=g-import-not-at-top  (the client has no public handle)

  return distributed.global_state.client if jax.process_count() > 1 else None


def _post_fired() -> bool:
  """Tells the other processes that this one's watchdog fires; True if they are there to be told."""
  client = _client()
  if client is None:
    return False
  import jax  # pylint: disable=g-import-not-at-top
  try:
    client.key_value_set(FIRE_KEY, str(jax.process_index()))
  except Exception:  # noqa: BLE001 -- another process posted first, or the service is gone: fire all the same
    pass
  return True


def _peer_fired() -> str | None:
  """The process whose watchdog fired, if another one's did."""
  client = _client()
  if client is None:
    return None
  try:
    return client.key_value_try_get(FIRE_KEY)
  except Exception:  # noqa: BLE001 -- not posted (NOT_FOUND), or the service is gone
    return None
