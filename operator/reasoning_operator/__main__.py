"""`python -m reasoning_operator [--all-namespaces | --namespace NS …] [--liveness URL]`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import kopf


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reasoning-operator", description=__doc__)
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    scope.add_argument("-n", "--namespace", action="append", default=[], help="watch this namespace")
    parser.add_argument("--liveness", help="serve kopf's health probe here, e.g. http://0.0.0.0:8080/healthz")
    parser.add_argument("--verbose", action="store_true")
    arguments = parser.parse_args(argv)
    logging.getLogger("kopf.objects").setLevel(logging.DEBUG if arguments.verbose else logging.WARNING)
    logging.basicConfig(
        level=logging.DEBUG if arguments.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    import reasoning_operator.handlers  # noqa: F401  (registers the handlers)

    kopf.run(
        standalone=True,  # one replica; no peering objects to create or clean up
        clusterwide=arguments.all_namespaces or not arguments.namespace,
        namespaces=arguments.namespace,
        liveness_endpoint=arguments.liveness,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
