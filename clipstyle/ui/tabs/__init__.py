"""One module per tab of the web UI; each has ``build(ctx)`` laying out its tab inside ``gr.Tab`` and wiring
its events (``ctx``: :class:`clipstyle.ui.tabs.common.Context`)."""
