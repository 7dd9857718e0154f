"""The ``persona`` console command: long commands run as a process group that dies whole.

``persona train``/``monitor``/``score``/``data``/``demo`` run in-process, and the joblib/loky
workers they fork outlive a ``kill -9`` of the command (measured: still running after 20 s,
reparented to PID 1). So this entry starts the command again as the leader of its own group
(``process_tree.run_group``) and waits: when the command ends, however it ends, or this process
is stopped or interrupted, the whole group is stopped; when this process is SIGKILLed, the
leader gets SIGTERM and stops its group itself. Short commands run directly.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

LONG_COMMANDS = frozenset({"train", "monitor", "score", "data", "demo"})
IN_GROUP = "PERSONA_CLI_GROUP_LEADER"  # set for the re-started command only


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    from persona import cli

    if os.environ.pop(IN_GROUP, None) == "1":
        from persona.services.process_tree import install_group_teardown

        if os.getpgid(0) == os.getpid():
            install_group_teardown()
        return cli.main(args)
    if not args or args[0] not in LONG_COMMANDS:
        return cli.main(args)
    return _run_as_group(args, cli.main)


def _run_as_group(args: list[str], direct: Callable[[list[str]], int]) -> int:
    from persona.errors import PersonaError
    from persona.services import process_tree
    from persona.settings import load_settings

    try:
        home = load_settings().home
    except PersonaError:
        return direct(args)  # the command itself reports the configuration error
    command = [sys.executable, "-m", "persona.grouped_cli", *args]
    try:
        code = process_tree.run_group(
            command, {**os.environ, IN_GROUP: "1"}, process_tree.records_folder(home)
        )
    except KeyboardInterrupt:  # Ctrl-C reaches this process; the group was stopped meanwhile
        return 130
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    raise SystemExit(main())
