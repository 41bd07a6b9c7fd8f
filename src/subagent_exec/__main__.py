"""The ``subagent-exec`` command.

``subagent-exec serve`` runs the demo server (needs the ``server`` extra);
``subagent-exec demo`` runs the terminal demo (same as ``make demo``).
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="subagent-exec", description="Background sub-agents for LangChain/LangGraph."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser(
        "serve", help="serve the live run page and task API (pip install 'subagent-exec[server]')"
    )
    try:
        from .server._cli import add_serve_arguments
    except ImportError:  # the server extra is not installed; `serve` says so when run
        pass
    else:
        add_serve_arguments(serve_parser)
    commands.add_parser("demo", help="run the offline terminal demo")
    args, rest = parser.parse_known_args(argv)
    if args.command == "serve":
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        try:
            from .server._cli import serve
        except ImportError:
            print("subagent-exec serve needs: pip install 'subagent-exec[server]'", file=sys.stderr)
            return 2
        return serve(args)
    from .demo import main as demo_main

    return demo_main(rest)


if __name__ == "__main__":
    sys.exit(main())
