"""The one optimization loop (:mod:`clipstyle.optimize.loop`) and its progress display."""
