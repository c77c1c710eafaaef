"""Starts threads that never end until no more can start, then waits for them."""

import json
import os
import sys
import threading
import time

if len(sys.argv) < 2:  # restart with the test's settings on the command line, where /proc shows its marker
    os.execv(sys.executable, [sys.executable, "-I", "-S", "main.py", sys.stdin.read()])
config = json.loads(sys.argv[1])


def sleep_forever() -> None:
    while True:
        time.sleep(1)


started = 0
try:
    while started < 10_000:
        threading.Thread(target=sleep_forever).start()
        started += 1
except RuntimeError:
    pass
print("threads:", started, flush=True)
