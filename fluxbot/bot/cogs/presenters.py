"""How jobs look in Discord: status lines, result embeds, attachments. No I/O here."""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from dataclasses import dataclass

import discord

from fluxbot.app.image_routing import Route, route_image
from fluxbot.core.edits import ImageEdit
from fluxbot.core.requests import GenerationRequest
from fluxbot.engine.encoding import EncodedImage, fit_upload
from fluxbot.serving.events import PositionEvent, ProgressEvent, StartedEvent
from fluxbot.store.guilds import SafetyPolicy
from fluxbot.store.models import JobRow

EMBED_COLOUR = discord.Colour.from_rgb(88, 101, 242)
PROMPT_TITLE_MAX = 256
REROLL, NEW_SEED, CANCEL = "🔁", "🎲", "❌"
CONTROL_EMOJIS = (REROLL, NEW_SEED, CANCEL)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def queued_text(public_id: str, position: int, eta_s: float) -> str:
    eta_at = int(time.time() + eta_s)
    return (
        f"⏳ Queued `{public_id}`: position **{position}**, "
        f"ready <t:{eta_at}:R> (about {eta_s:.0f} s)"
    )


def status_text(public_id: str, event: PositionEvent | StartedEvent | ProgressEvent) -> str:
    if isinstance(event, PositionEvent):
        return queued_text(public_id, event.position, event.eta_s)
    if isinstance(event, StartedEvent):
        return f"🎨 `{public_id}` is being made on {event.device}…"
    filled = round(10 * event.step / max(1, event.total))
    bar = "▰" * filled + "▱" * (10 - filled)
    return f"🎨 `{public_id}` step {event.step}/{event.total} {bar}"


def lineage(row: JobRow) -> str | None:
    """Where a job's image came from, for people: "vary (strength 0.35) of `abc123`"."""
    edit = (row.params or {}).get("edit")
    return ImageEdit.from_params(edit).lineage() if edit else None


def result_embed(
    row: JobRow, images: Sequence[EncodedImage], device_s: float, notes: Sequence[str]
) -> discord.Embed:
    """Prompt, seed(s), size, steps, device time and the job id; notes such as re-encoding."""
    request = GenerationRequest.from_params(row.params)
    embed = discord.Embed(title=_short(request.prompt, PROMPT_TITLE_MAX), colour=EMBED_COLOUR)
    seeds = ", ".join(str(image.seed) for image in images) or str(request.seed)
    if request.animation:
        seeds = f"{request.seed} → {request.animation.seed_to}"
    embed.add_field(name="Seed" if len(images) <= 1 else "Seeds", value=seeds)
    embed.add_field(name="Size", value=f"{request.width}×{request.height}")
    embed.add_field(name="Steps", value=str(request.steps))
    if request.negative:
        embed.add_field(name="Negative", value=_short(request.negative, 1024), inline=False)
    embed.add_field(name="Device time", value=f"{device_s:.2f} s")
    embed.add_field(name="Job", value=f"`{row.public_id}`")
    origin = lineage(row)
    if origin:
        embed.add_field(name="From", value=origin, inline=False)
    if notes:
        embed.description = "\n".join(f"ℹ️ {note}" for note in notes)
    embed.set_footer(text="🔁 same seed · 🎲 new seed · ❌ cancel/delete")
    return embed


@dataclass(frozen=True, slots=True)
class Upload:
    """One attachment's bytes and name; `files()` makes fresh discord.File objects from them, so
    a retried post never sends a half-read file."""

    filename: str
    data: bytes
    spoiler: bool = False


def files(uploads: Sequence[Upload]) -> list[discord.File]:
    return [
        discord.File(io.BytesIO(u.data), filename=u.filename, spoiler=u.spoiler) for u in uploads
    ]


def routed_uploads(
    row: JobRow,
    images: Sequence[EncodedImage],
    limit: int,
    routes: Sequence[Route],
) -> tuple[list[Upload], list[str]]:
    """Attachments within the upload limit (re-encoded where needed), flagged ones as spoilers
    or left out as `routes` say, and notes on what was changed or withheld."""
    uploads, notes = [], []
    withheld = [index + 1 for index, route in enumerate(routes) if route is Route.WITHHOLD]
    for index, (image, route) in enumerate(zip(images, routes, strict=True)):
        if route is Route.WITHHOLD:
            continue
        fitted = fit_upload(image, limit) if image.format != "gif" else image
        if fitted.note:
            notes.append(f"Image {index + 1} {fitted.note}.")
        name = f"{row.public_id}-{index + 1}-seed{image.seed}.{fitted.extension}"
        uploads.append(Upload(name, fitted.data, spoiler=route is Route.SPOILER))
    if any(route is Route.SPOILER for route in routes):
        notes.append("The image-safety check flagged what is hidden: click to see it.")
    if withheld:
        which = ", ".join(str(i) for i in withheld)
        notes.append(
            f"Image(s) {which} withheld: the image-safety check flagged them. They stay in "
            f"your /history; `/show {row.public_id}` in an age-restricted channel posts them."
        )
    return uploads, notes


def routes_for(row: JobRow, policy: SafetyPolicy, *, age_restricted_channel: bool) -> list[Route]:
    """How each of the job's stored images goes out, by its stored verdict."""
    return [
        route_image(image.safety_verdict, policy, age_restricted_channel=age_restricted_channel)
        for image in sorted(row.images, key=lambda i: i.index)
    ]


def failure_text(public_id: str, error: str | None) -> str:
    return f"⚠️ `{public_id}` failed: {error or 'unknown error'}"


def cancelled_text(public_id: str) -> str:
    return f"✖️ `{public_id}` was cancelled."
