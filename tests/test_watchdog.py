"""The loop's watchdog (gantx/watchdog.py): quiet while steps finish or the loop is paused, and a
message, every thread's stack and exit status 75 once no step finishes for its limit."""

import subprocess
import sys
import textwrap
import time

from conftest import REPO

from gantx import watchdog


def test_the_limit_is_the_minimum_or_ten_median_steps():
  dog = watchdog.Watchdog(0, lambda: "nothing")  # 0: no thread, but the arithmetic is the same
  assert dog.limit() == 0
  dog.min_limit_s = 2.0
  for _ in range(5):
    time.sleep(0.05)
    dog.beat()
  assert dog.limit() == 2.0  # steps of ~0.05 s: the minimum
  dog._times.extend([0.5] * 20)  # pylint: disable=protected-access  (slow steps, without waiting for them)
  assert dog.limit() == 5.0
  dog.close()


def test_a_stalled_loop_writes_where_it_waits_and_exits_75():
  script = textwrap.dedent("""
      import time
      from gantx import watchdog
      dog = watchdog.Watchdog(1.0, lambda: "step 7 to finish", check_every_s=0.1)
      for _ in range(10):  # steps of 0.1 s: quiet
        time.sleep(0.1)
        dog.beat()
      with dog.paused():  # an evaluation of 2 s: quiet
        time.sleep(2.0)
      print("stalling", flush=True)
      def stuck_in_a_collective():
        time.sleep(60)
      stuck_in_a_collective()
      """)
  began = time.monotonic()
  proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
  assert proc.returncode == watchdog.EXIT_CODE == 75, proc.stderr
  assert proc.stdout.strip() == "stalling"  # not during the steps nor the pause
  assert time.monotonic() - began < 30
  err = proc.stderr
  assert "gantx watchdog: process 0 of 1: no step finished for 1 s" in err, err
  assert "Waiting for step 7 to finish." in err
  assert "line 12 in stuck_in_a_collective" in err  # the main thread's stack, where it waits
