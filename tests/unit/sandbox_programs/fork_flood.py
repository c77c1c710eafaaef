"""Forks without end; every child does the same."""

import contextlib
import json
import os
import sys

if len(sys.argv) < 2:  # restart with the test's settings on the command line, where /proc shows its marker
    os.execv(sys.executable, [sys.executable, "-I", "-S", "main.py", sys.stdin.read()])
config = json.loads(sys.argv[1])
while True:
    with contextlib.suppress(OSError):
        os.fork()
