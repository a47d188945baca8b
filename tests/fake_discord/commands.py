"""Application commands as Discord stores them (fluxbot syncs its commands globally).

`CommandTree.sync` bulk-overwrites the set; a command keeps its id while its name and type stay
the same, as on Discord, so ids a test saw before a re-sync remain valid.
"""

from __future__ import annotations

from typing import Any

from .snowflakes import SnowflakeGenerator
from .validation import validate_commands
from .waiting import ChangeFeed


class CommandRegistry:
    """The registered global commands of the one application the fake serves."""

    def __init__(self, ids: SnowflakeGenerator, application_id: int, changes: ChangeFeed) -> None:
        self.ids = ids
        self.application_id = application_id
        self.changes = changes
        self.commands: list[dict[str, Any]] = []

    def overwrite(self, payload: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Bulk overwrite (what `CommandTree.sync` does); ids survive for unchanged names."""
        validate_commands(payload)
        previous = {(c["name"], c["type"]): c["id"] for c in self.commands}
        stored = []
        for data in payload:
            kind = int(data.get("type", 1))
            command = {
                "default_member_permissions": None,
                "nsfw": False,
                "contexts": None,
                "integration_types": [0],
                "options": [],
                **{k: v for k, v in data.items() if k not in ("id", "application_id", "version")},
                "type": kind,
                "id": previous.get((data["name"], kind)) or str(self.ids.next()),
                "application_id": str(self.application_id),
                "version": str(self.ids.next()),
            }
            stored.append(command)
        self.commands = stored
        self.changes.notify()
        return stored

    def find(self, name: str) -> dict[str, Any] | None:
        """The chat-input command `name`."""
        return next((c for c in self.commands if c["name"] == name and c["type"] == 1), None)
