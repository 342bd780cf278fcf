"""The web UI (``clipstyle ui``, extra ``[ui]`` = gradio): :func:`build_app` / :func:`launch` in :mod:`clipstyle.ui.app`.

Importing this package does not import Gradio."""

__all__ = ["build_app", "launch", "UIConfig"]


def __getattr__(name: str):
    if name in ("build_app", "launch"):
        from clipstyle.ui import app

        return getattr(app, name)
    if name == "UIConfig":
        from clipstyle.ui.runner import UIConfig

        return UIConfig
    raise AttributeError(f"module 'clipstyle.ui' has no attribute {name!r}")
