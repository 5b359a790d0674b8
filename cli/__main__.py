"""`python -m cli` runs the decodelab command."""

from cli.main import main

main()
