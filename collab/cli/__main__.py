"""``python -m collab.cli``, as the tests, the benchmarks and the projection worker run
the command: the same as the installed ``collab``."""

from collab.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
