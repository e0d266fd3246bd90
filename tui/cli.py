"""Entry point for `go-k8s-debug` and `kubectl godebug`.

Subcommands: `sandbox` (the demo/test cluster), `diagnose` (headless report),
`replay` (open a recording); anything else opens the console.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "sandbox":
        from demo.sandbox.cli import main as sandbox_main

        return sandbox_main(args[1:])
    if args and args[0] == "diagnose":
        from tui.diagnose_cli import main as diagnose_main

        return diagnose_main(args[1:])
    if args and args[0] == "replay":
        from tui.replay_cli import main as replay_main

        return replay_main(args[1:])
    from tui.console_cli import main as console_main

    return console_main(args)


if __name__ == "__main__":
    sys.exit(main())
