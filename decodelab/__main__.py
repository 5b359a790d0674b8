"""`python -m decodelab` runs the decodelab command."""

from decodelab.cli.main import main

main()
