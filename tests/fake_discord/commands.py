"""Application commands as Discord stores them: global and per guild, with stable ids.

`CommandTree.sync` bulk-overwrites the set; a command keeps its id while its name and type stay
the same, as on Discord, so ids a test saw before a re-sync remain valid.
"""

from __future__ import annotations

from typing import Any

from . import errors
from .snowflakes import SnowflakeGenerator
from .validation import validate_commands
from .waiting import ChangeFeed


class CommandRegistry:
    """The registered commands of the one application the fake serves."""

    def __init__(self, ids: SnowflakeGenerator, application_id: int, changes: ChangeFeed) -> None:
        self.ids = ids
        self.application_id = application_id
        self.changes = changes
        self.global_commands: list[dict[str, Any]] = []
        self.guild_commands: dict[int, list[dict[str, Any]]] = {}

    def all(self) -> list[dict[str, Any]]:
        """Global commands first, then each guild's."""
        stored = list(self.global_commands)
        for commands in self.guild_commands.values():
            stored.extend(commands)
        return stored

    def scope(self, guild_id: int | None) -> list[dict[str, Any]]:
        if guild_id is None:
            return self.global_commands
        return self.guild_commands.setdefault(guild_id, [])

    def _stored_command(
        self, data: dict[str, Any], guild_id: int | None, previous: list[dict[str, Any]]
    ) -> dict[str, Any]:
        kind = int(data.get("type", 1))
        old = next((c for c in previous if c["name"] == data["name"] and c["type"] == kind), None)
        stored = {
            "default_member_permissions": None,
            "dm_permission": True,
            "nsfw": False,
            "contexts": None,
            "integration_types": [0],
            "options": [],
            "description": "",
            **{k: v for k, v in data.items() if k not in ("id", "application_id", "version")},
            "type": kind,
            "id": old["id"] if old else str(self.ids.next()),
            "application_id": str(self.application_id),
            "version": str(self.ids.next()),
        }
        if guild_id is not None:
            stored["guild_id"] = str(guild_id)
        return stored

    def overwrite(
        self, guild_id: int | None, payload: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Bulk overwrite (what `CommandTree.sync` does); ids survive for unchanged names."""
        validate_commands(payload)
        previous = self.scope(guild_id)
        stored = [self._stored_command(c, guild_id, previous) for c in payload]
        if guild_id is None:
            self.global_commands = stored
        else:
            self.guild_commands[guild_id] = stored
        self.changes.notify()
        return stored

    def upsert(self, guild_id: int | None, data: dict[str, Any]) -> dict[str, Any]:
        validate_commands([data])
        commands = self.scope(guild_id)
        stored = self._stored_command(data, guild_id, commands)
        commands[:] = [c for c in commands if c["id"] != stored["id"]] + [stored]
        self.changes.notify()
        return stored

    def get(self, guild_id: int | None, command_id: int) -> dict[str, Any]:
        for command in self.scope(guild_id):
            if int(command["id"]) == command_id:
                return command
        raise errors.unknown_command()

    def edit(self, guild_id: int | None, command_id: int, data: dict[str, Any]) -> dict[str, Any]:
        command = self.get(guild_id, command_id)
        merged = {**command, **data}
        validate_commands([merged])
        command.update(data)
        command["version"] = str(self.ids.next())
        self.changes.notify()
        return command

    def delete(self, guild_id: int | None, command_id: int) -> None:
        command = self.get(guild_id, command_id)
        self.scope(guild_id).remove(command)
        self.changes.notify()

    def find(self, name: str, guild_id: int | None, kind: int = 1) -> dict[str, Any] | None:
        """Guild commands first (as the client shows them), then global ones."""
        pools = ([self.scope(guild_id)] if guild_id else []) + [self.global_commands]
        for pool in pools:
            for command in pool:
                if command["name"] == name and command["type"] == kind:
                    return command
        return None
