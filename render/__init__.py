"""Rich renderables drawn by both the TUI and the command line (tables, pictures); below tui/ and cli/."""
