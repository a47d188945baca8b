"""One example of every user-facing error and the sentence people see for it, shared by the
tests of each front end (tests/bot/test_errors.py, tests/web/test_errors.py).

The classes are discovered (every subclass of `UserError` anywhere in fluxbot), so a new one
without an entry in EXAMPLES fails there instead of showing "Something went wrong" to users.
"""

from __future__ import annotations

import importlib
import pkgutil
from datetime import UTC, datetime

import fluxbot
from fluxbot.app.admission import Refused
from fluxbot.app.export import UnknownUser
from fluxbot.app.permissions import PermissionDenied
from fluxbot.bot.login import DiscordUnreachable, TokenRejected
from fluxbot.bot.tree import InvalidPayload
from fluxbot.cli.commands import ModelUnavailable
from fluxbot.cli.main import CliError
from fluxbot.core.errors import NotAllowed, UserError
from fluxbot.core.requests import RequestError
from fluxbot.engine.animation import GifTooLarge
from fluxbot.prompts.policy import REASON_EXPLICIT, PolicyRefused
from fluxbot.serving.scheduler import QueueFull, SchedulerClosed
from fluxbot.store.errors import JobNotFound, MigrationError
from fluxbot.store.usage import CooldownActive, LimitReached, QuotaReached

UNTIL = datetime(2030, 1, 1, tzinfo=UTC)
STAMP = int(UNTIL.timestamp())

# One example of each user-facing error and the exact message a user must see, in Discord and
# in the web studio alike (one table: fluxbot/app/user_messages.py).
EXAMPLES: dict[type[UserError], tuple[UserError, str]] = {
    UserError: (UserError("Pick a job of yours."), "Pick a job of yours."),
    NotAllowed: (NotAllowed("Not yours."), "🔒 Not yours."),
    RequestError: (
        RequestError("steps", 20, "1 to 8"),
        "That didn't work: steps 20 is not allowed: 1 to 8.",
    ),
    PolicyRefused: (PolicyRefused(REASON_EXPLICIT), f"🚫 {REASON_EXPLICIT}"),
    QueueFull: (
        QueueFull(scope="user", cap=2, waiting=5, user_waiting=2),
        "⏳ You already have 2 job(s) waiting, and the limit is 2 per person. "
        "Wait for one to finish, or cancel one.",
    ),
    SchedulerClosed: (
        SchedulerClosed("No GPU is available to make images right now."),
        "⏸️ No GPU is available to make images right now.",
    ),
    GifTooLarge: (
        GifTooLarge("it needs 12 MB"),
        "The animation is too big to upload: it needs 12 MB.",
    ),
    JobNotFound: (JobNotFound(42), "That job no longer exists: it was deleted, or never existed."),
    MigrationError: (MigrationError("no migrations"), "no migrations"),
    CliError: (CliError("--seed 'x' is not a whole number"), "--seed 'x' is not a whole number"),
    ModelUnavailable: (ModelUnavailable("download the model"), "download the model"),
    UnknownUser: (UnknownUser(7), str(UnknownUser(7))),
    DiscordUnreachable: (DiscordUnreachable("no route"), "no route"),
    TokenRejected: (TokenRejected("check DISCORD_TOKEN"), "check DISCORD_TOKEN"),
    PermissionDenied: (
        PermissionDenied("Only a manager of this server can do that."),
        "🔒 Only a manager of this server can do that.",
    ),
    Refused: (
        Refused("The bot is not used in this channel."),
        "🚫 The bot is not used in this channel.",
    ),
    InvalidPayload: (
        InvalidPayload("option steps must be a whole number"),
        "option steps must be a whole number",
    ),
    LimitReached: (LimitReached("Slow down.", UNTIL), "⏳ Slow down."),
    CooldownActive: (
        CooldownActive(UNTIL),
        f"⏳ This server has a cooldown between images: try again <t:{STAMP}:R>.",
    ),
    QuotaReached: (
        QuotaReached(3, UNTIL),
        f"⏳ You have made your 3 image job(s) for today in this server; the quota resets "
        f"<t:{STAMP}:R>.",
    ),
}


def user_error_classes() -> set[type[UserError]]:
    """Every subclass of UserError defined in fluxbot (all its modules imported first)."""
    for module in pkgutil.walk_packages(fluxbot.__path__, "fluxbot."):
        if module.name != "fluxbot.__main__":
            importlib.import_module(module.name)
    found: set[type[UserError]] = set()
    todo = [UserError]
    while todo:
        cls = todo.pop()
        if cls.__module__.startswith("fluxbot.") and cls not in found:
            found.add(cls)
            todo.extend(cls.__subclasses__())
    return found
