"""Prints its environment and every process environment it can read."""

import json
import os
import sys

if len(sys.argv) < 2:  # restart with the test's settings on the command line, where /proc shows its marker
    os.execv(sys.executable, [sys.executable, "-I", "-S", "main.py", sys.stdin.read()])
config = json.loads(sys.argv[1])
print(dict(os.environ))
for entry in os.listdir("/proc"):
    if entry.isdigit():
        try:
            with open(f"/proc/{entry}/environ", "rb") as environ:
                print(entry, environ.read())
        except OSError as error:
            print(entry, error)
