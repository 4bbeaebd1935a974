"""``python -m animegan``: the same as the ``animegan`` command."""

from animegan.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
