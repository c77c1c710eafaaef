"""`python -m reasoning_operator [--all-namespaces | --namespace NS …] [--liveness URL]
[--leader-election-namespace NS [--leader-election-id NAME]]`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import kopf

from reasoning_operator.leadership import LEASE_NAME_VARIABLE, LEASE_NAMESPACE_VARIABLE


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reasoning-operator", description=__doc__)
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    scope.add_argument("-n", "--namespace", action="append", default=[], help="watch this namespace")
    parser.add_argument("--liveness", help="serve kopf's health probe here, e.g. http://0.0.0.0:8080/healthz")
    parser.add_argument(
        "--leader-election-namespace",
        help="elect one active replica through a Lease in this namespace (the others stand by, cache warm)",
    )
    parser.add_argument("--leader-election-id", default="reasoning-operator", help="the Lease's name")
    parser.add_argument("--verbose", action="store_true")
    arguments = parser.parse_args(argv)
    if arguments.leader_election_namespace:
        os.environ[LEASE_NAMESPACE_VARIABLE] = arguments.leader_election_namespace
        os.environ[LEASE_NAME_VARIABLE] = arguments.leader_election_id
    logging.getLogger("kopf.objects").setLevel(logging.DEBUG if arguments.verbose else logging.WARNING)
    logging.basicConfig(
        level=logging.DEBUG if arguments.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    import reasoning_operator.handlers  # noqa: F401  (registers the handlers)

    kopf.run(
        standalone=True,  # no kopf peering: replicas elect their active one through a Lease (leadership.py)
        clusterwide=arguments.all_namespaces or not arguments.namespace,
        namespaces=arguments.namespace,
        liveness_endpoint=arguments.liveness,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
