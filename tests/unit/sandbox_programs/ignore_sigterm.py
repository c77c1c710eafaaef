"""Ignores the polite signals and spins."""

import json
import os
import signal
import sys

if len(sys.argv) < 2:  # restart with the test's settings on the command line, where /proc shows its marker
    os.execv(sys.executable, [sys.executable, "-I", "-S", "main.py", sys.stdin.read()])
config = json.loads(sys.argv[1])
for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU):
    signal.signal(number, signal.SIG_IGN)
while True:
    pass
