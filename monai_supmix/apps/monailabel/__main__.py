"""``python -m monai_supmix.apps.monailabel create-app APP_DIR --bundle bundles/chase [--bundle ...]``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from monai_supmix.apps.monailabel.scaffold import create_app

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of the MONAI Label glue; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m monai_supmix.apps.monailabel", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser(
        "create-app",
        help="write a MONAI Label app folder (main.py + model/<bundle>) for `monailabel start_server --app`",
    )
    create.add_argument("app_dir", help="folder to create")
    create.add_argument(
        "--bundle", action="append", required=True, help="bundle folder, e.g. bundles/chase (repeat for several)"
    )
    create.add_argument("--link", action="store_true", help="symlink the bundles instead of copying them")
    create.add_argument("--no-weights", action="store_true", help="do not copy the bundles' models/*.pt")
    create.add_argument("--overwrite", action="store_true", help="replace bundles already in the app")
    args = parser.parse_args(argv)
    try:
        app_dir = create_app(
            args.app_dir, args.bundle, link=args.link, copy_weights=not args.no_weights, overwrite=args.overwrite
        )
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    names = ",".join(sorted({b.rstrip("/").split("/")[-1] for b in args.bundle}))
    print(app_dir)
    print(f"start: monailabel start_server --app {app_dir} --studies <images folder> --conf models {names}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
