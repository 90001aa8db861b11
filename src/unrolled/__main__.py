"""The `unrolled` command (also `python -m unrolled`): the command line of `unrolled.cli`.

The command line is loaded here, inside the command, so that a Ctrl-C while NumPy and the
tasks load exits as any other interruption does (code 130, one line) rather than with a traceback.
"""
import sys


def main(argv=None) -> int:
    try:
        from .cli import main as run
    except KeyboardInterrupt:
        print("unrolled: interrupted.", file=sys.stderr)
        return 130
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
