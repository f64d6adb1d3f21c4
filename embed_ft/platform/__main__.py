"""``python -m embed_ft.platform serve|status|stop``: run or manage the local platform of one home.

    python -m embed_ft.platform serve --home ./.embed_ft/platform --port 8765

The token comes from ``--token`` or, better (command lines are visible to other users), EMBED_FT_PLATFORM_TOKEN.
"""

from __future__ import annotations

import argparse
import json
import sys

from .launcher import RemoteBindRefused, serve_forever, status, stop
from .settings import DEFAULT_HOST, DEFAULT_PORT, PlatformSettings


def _settings(args: argparse.Namespace) -> PlatformSettings:
    overrides = {}
    for key in ("home", "beir_root", "token", "host", "port", "max_upload_bytes"):
        value = getattr(args, key, None)
        if value is not None:
            overrides[key] = value
    return PlatformSettings(**overrides)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m embed_ft.platform", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the platform in the foreground until SIGTERM/Ctrl-C")
    serve.add_argument("--host", default=DEFAULT_HOST, help=f"bind address (default {DEFAULT_HOST})")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT,
                       help=f"port, 0 = any free one (default {DEFAULT_PORT})")
    serve.add_argument("--home", help="platform home (default $EMBED_FT_HOME or ./.embed_ft/platform)")
    serve.add_argument("--beir-root", dest="beir_root", help="folder of BEIR datasets (default <home>/beir)")
    serve.add_argument("--token", help="require 'Authorization: Bearer <token>' (prefer $EMBED_FT_PLATFORM_TOKEN)")
    serve.add_argument("--max-upload-bytes", dest="max_upload_bytes", type=int, help="largest accepted upload")
    serve.add_argument("--allow-remote", action="store_true",
                       help="allow a non-loopback --host (a token is then required)")
    serve.add_argument("--log-level", default="info")

    for name, text in (("status", "print the platform's status as JSON"), ("stop", "stop the platform")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--home", help="platform home (default $EMBED_FT_HOME or ./.embed_ft/platform)")

    args = parser.parse_args(argv)
    settings = _settings(args)
    if args.command == "serve":
        try:
            serve_forever(settings, allow_remote=args.allow_remote, log_level=args.log_level)
        except RemoteBindRefused as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.command == "status":
        print(json.dumps(status(settings), indent=1))
        return 0
    stopped = stop(settings)
    print("stopped" if stopped else f"no platform running for {settings.home}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
