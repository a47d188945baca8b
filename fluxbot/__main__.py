"""`python -m fluxbot`: the same as the `fluxbot` command."""

from fluxbot.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
