"""`python -m decodelab.cli` runs the decodelab command."""

from .main import main

main()
