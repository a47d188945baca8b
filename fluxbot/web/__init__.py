"""The web studio: a Gradio (Blocks) front end on a FastAPI app, beside the Discord bot.

It is one more adapter on the same composition root (fluxbot/app/root.py): the same store,
scheduler and engine, so web jobs queue fairly with Discord jobs and count against the same caps.
Gradio and FastAPI come with the optional extra `fluxbot[web]`.
"""

from __future__ import annotations

WEB_EXTRA = "fluxbot[web]"


def missing_extra() -> str | None:
    """None when the studio's packages import; else one line saying which extra to install."""
    try:
        import fastapi  # noqa: F401
        import gradio  # noqa: F401
        import httpx  # noqa: F401
        import itsdangerous  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        return (
            f"the web studio needs the {WEB_EXTRA} extra ({exc.name} is missing): "
            f"pip install '{WEB_EXTRA}'"
        )
    return None
