"""The web UI (``clipstyle ui``, extra ``[ui]`` = gradio): :func:`build_app` / :func:`launch` in
:mod:`clipstyle.ui.app`, one module per tab in :mod:`clipstyle.ui.tabs`, the operator's settings and caps in
:mod:`clipstyle.ui.config`.

Importing this package does not import Gradio."""

__all__ = ["build_app", "launch", "Limits", "UIConfig"]


def __getattr__(name: str):
    if name in ("build_app", "launch"):
        from clipstyle.ui import app

        return getattr(app, name)
    if name in ("UIConfig", "Limits"):
        from clipstyle.ui import config

        return getattr(config, name)
    raise AttributeError(f"module 'clipstyle.ui' has no attribute {name!r}")
