"""Fills one file, then many, until the disk refuses; says how far it got."""

import json
import os
import sys

if len(sys.argv) < 2:  # restart with the test's settings on the command line, where /proc shows its marker
    os.execv(sys.executable, [sys.executable, "-I", "-S", "main.py", sys.stdin.read()])
config = json.loads(sys.argv[1])
written = 0
try:
    with open("fill.bin", "wb") as big:
        while True:
            big.write(b"x" * (1 << 20))
            big.flush()
            written += 1 << 20
except OSError as error:
    print("one file:", written, error, flush=True)
try:
    for number in range(100_000):
        with open(f"fill-{number}.bin", "wb") as small:
            small.write(b"x" * (1 << 20))
            written += 1 << 20
except OSError as error:
    print("many files:", written, error, flush=True)
    raise
