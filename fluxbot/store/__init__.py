"""The store: SQLite (or any SQLAlchemy async URL) plus image files, the source of truth for jobs.

Open it with `await Store.open(settings)`; see `Store` for what it offers.
"""

from fluxbot.store.bans import BanRepo
from fluxbot.store.db import Database, create_engine
from fluxbot.store.errors import JobNotFound, MigrationError, StoreError
from fluxbot.store.files import EncodedImage, ImageFiles
from fluxbot.store.guilds import GuildPolicy, GuildSettingsRepo, SafetyPolicy
from fluxbot.store.images import ImageRepo
from fluxbot.store.jobs import JobPage, JobRepo, Origin
from fluxbot.store.migrate import current_revision, downgrade_database, upgrade_database
from fluxbot.store.models import Ban, Base, GuildSettings, Image, JobRow, SeedUse, Usage, User
from fluxbot.store.recovery import Recovery, recover_interrupted
from fluxbot.store.removal import Removal
from fluxbot.store.retention import RetentionPolicy
from fluxbot.store.store import Startup, Store
from fluxbot.store.usage import Claim, LimitReached, UsageRepo
from fluxbot.store.users import SeedRecord, UserRepo

__all__ = [
    "Ban",
    "BanRepo",
    "Base",
    "Claim",
    "Database",
    "EncodedImage",
    "GuildPolicy",
    "GuildSettings",
    "GuildSettingsRepo",
    "Image",
    "ImageFiles",
    "ImageRepo",
    "JobNotFound",
    "JobPage",
    "JobRepo",
    "JobRow",
    "LimitReached",
    "MigrationError",
    "Origin",
    "Recovery",
    "Removal",
    "RetentionPolicy",
    "SafetyPolicy",
    "SeedRecord",
    "SeedUse",
    "Startup",
    "Store",
    "StoreError",
    "Usage",
    "UsageRepo",
    "User",
    "UserRepo",
    "create_engine",
    "current_revision",
    "downgrade_database",
    "recover_interrupted",
    "upgrade_database",
]
