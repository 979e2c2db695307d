"""``distill build``: specs and presets in, through a lock and cached layers, an image out
(``pipeline``). See docs/architecture.md."""
