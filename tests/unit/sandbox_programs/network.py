"""Tries the test's listener on 127.0.0.1, a name lookup and two outside addresses."""

import json
import os
import socket
import sys

if len(sys.argv) < 2:  # restart with the test's settings on the command line, where /proc shows its marker
    os.execv(sys.executable, [sys.executable, "-I", "-S", "main.py", sys.stdin.read()])
config = json.loads(sys.argv[1])
reached, refused = [], []
for name, address in (
    ("loopback", ("127.0.0.1", config["port"])),
    ("dns", None),
    ("1.1.1.1", ("1.1.1.1", 53)),
):
    try:
        if address is None:
            socket.getaddrinfo("example.com", 443)
        else:
            socket.create_connection(address, timeout=1).close()
        reached.append(name)
    except OSError as error:
        refused.append(f"{name}: {error}")
print("reached:", ", ".join(reached) or "nothing")
if not reached:
    sys.exit("no network: " + "; ".join(refused))
