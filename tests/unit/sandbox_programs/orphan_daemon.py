"""Leaves a daemon behind (double fork, new session, SIGTERM ignored) and exits at once."""

import json
import os
import signal
import sys

if len(sys.argv) < 2:  # restart with the test's settings on the command line, where /proc shows its marker
    os.execv(sys.executable, [sys.executable, "-I", "-S", "main.py", sys.stdin.read()])
config = json.loads(sys.argv[1])
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        loop = "import time\nwhile True:\n    time.sleep(0.2)"
        os.execv(sys.executable, [sys.executable, "-I", "-S", "-c", loop, config["marker"]])
    os._exit(0)
os.wait()
print("daemon left behind")
