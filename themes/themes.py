"""decodelab's Textual themes: a dark and a light one."""

from __future__ import annotations

from textual.theme import Theme

DARK = Theme(
    name="decodelab-dark",
    primary="#5ec962",
    secondary="#21918c",
    accent="#fde725",
    warning="#f0a030",
    error="#e05050",
    success="#5ec962",
    foreground="#e0e0e0",
    background="#14161a",
    surface="#1c1f24",
    panel="#252930",
    dark=True,
)

LIGHT = Theme(
    name="decodelab-light",
    primary="#2c728e",
    secondary="#21918c",
    accent="#472d7b",
    warning="#a06000",
    error="#b00020",
    success="#1f7a3a",
    foreground="#1c1c1c",
    background="#fafafa",
    surface="#f0f0f0",
    panel="#e4e4e4",
    dark=False,
)

THEMES = (DARK, LIGHT)
