"""decodelab's look: Textual themes, the app's .tcss, and colour-blind-safe heatmap scales."""
