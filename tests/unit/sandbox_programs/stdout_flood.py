"""Writes to stdout without end."""

import json
import os
import sys

if len(sys.argv) < 2:  # restart with the test's settings on the command line, where /proc shows its marker
    os.execv(sys.executable, [sys.executable, "-I", "-S", "main.py", sys.stdin.read()])
config = json.loads(sys.argv[1])
chunk = "x" * 65536
while True:
    sys.stdout.write(chunk)
