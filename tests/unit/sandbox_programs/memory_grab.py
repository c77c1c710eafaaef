"""Takes memory 64 MiB at a time until refused."""

import json
import os
import sys

if len(sys.argv) < 2:  # restart with the test's settings on the command line, where /proc shows its marker
    os.execv(sys.executable, [sys.executable, "-I", "-S", "main.py", sys.stdin.read()])
config = json.loads(sys.argv[1])
chunks = []
while True:
    chunks.append(bytearray(64 << 20))
