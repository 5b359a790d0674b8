"""decodelab's Textual app: side-by-side streaming panes, heatmaps, inspector, branching, presets."""
