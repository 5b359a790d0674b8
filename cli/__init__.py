"""decodelab's command line: the TUI launcher and the headless run / presets / bench commands."""
