"""decodelab: a terminal playground for LLM decoding settings.

The installed package holds the repository's top-level folders as sub-packages:
decodelab.engine (no UI), decodelab.tui, decodelab.cli, decodelab.server, decodelab.render and
decodelab.themes. Importing decodelab itself loads none of them.
"""

__version__ = "0.1.0"
