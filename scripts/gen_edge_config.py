"""Writes deploy/edge/nginx.compose.conf, the edge container's config in docker-compose.yml,
from the same template `vidsynth up` renders (deploy/edge/nginx.conf.j2).

Usage: python -m scripts.gen_edge_config [--check]
"""

from __future__ import annotations

import argparse
import sys

from vidsynth.cli.edge import COMPOSE_CONFIG_FILE, compose_config, render


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is out of date")
    args = parser.parse_args()
    wanted = render(compose_config())
    if args.check:
        return 0 if COMPOSE_CONFIG_FILE.exists() and COMPOSE_CONFIG_FILE.read_text() == wanted else 1
    COMPOSE_CONFIG_FILE.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
