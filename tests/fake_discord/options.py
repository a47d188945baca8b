"""Application command options typed the way Discord's client sends them.

Given the synced schema, `{"prompt": "a fox", "seed": 42}` becomes `[{"name": "prompt", "type": 3,
"value": "a fox"}, {"name": "seed", "type": 4, "value": 42}]`, subcommands wrap their options, and
users, roles, channels and attachments come with their `resolved` objects. What the real client
would refuse (a missing required option, a str for an integer, a value outside `choices` or the
min/max) raises here, so a test cannot send something Discord never would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .models import (
    FakeChannel,
    FakeGuild,
    FakeRole,
    FakeUser,
    StoredAttachment,
    guess_content_type,
    sniff_image_size,
)
from .state import DiscordState

OPTION_SUBCOMMAND = 1
OPTION_GROUP = 2
OPTION_STRING = 3
OPTION_INTEGER = 4
OPTION_BOOLEAN = 5
OPTION_USER = 6
OPTION_CHANNEL = 7
OPTION_ROLE = 8
OPTION_MENTIONABLE = 9
OPTION_NUMBER = 10
OPTION_ATTACHMENT = 11


@dataclass
class Upload:
    """A file a test user attaches to an ATTACHMENT command option."""

    filename: str
    data: bytes


def _resolved_add(resolved: dict[str, dict[str, Any]], kind: str, key: int, value: Any) -> None:
    resolved.setdefault(kind, {})[str(key)] = value


class OptionBuilder:
    """Builds the `data` of APPLICATION_COMMAND and AUTOCOMPLETE interactions."""

    def __init__(self, state: DiscordState) -> None:
        self.state = state

    def command_data(
        self,
        user: FakeUser,
        channel: FakeChannel,
        name: str,
        options: dict[str, Any],
        *,
        strict: bool,
        focused: str | None = None,
    ) -> dict[str, Any]:
        """`data` of an APPLICATION_COMMAND: the command id, typed `options`, and `resolved`."""
        path = name.split()
        command = self.state.commands.find(path[0], channel.guild_id)
        if command is None and strict:
            known = sorted(c["name"] for c in self.state.commands.global_commands)
            if channel.guild_id:
                known += sorted(c["name"] for c in self.state.commands.scope(channel.guild_id))
            raise LookupError(
                f"/{path[0]} is not registered with the fake Discord (synced: {known}); "
                "sync the command tree first, or pass strict=False"
            )
        guild = self.state.guild_of(channel)
        resolved: dict[str, dict[str, Any]] = {}
        schema: list[dict[str, Any]] | None = command["options"] if command else None
        leaf: list[dict[str, Any]] = []
        outer = leaf
        for part in path[1:]:
            sub = None
            if schema is not None:
                sub = next((o for o in schema if o["name"] == part), None)
                if sub is None or sub["type"] not in (OPTION_SUBCOMMAND, OPTION_GROUP):
                    raise ValueError(f"/{name}: {part!r} is not a subcommand")
                schema = sub.get("options") or []
            kind = sub["type"] if sub else (OPTION_SUBCOMMAND if part == path[-1] else OPTION_GROUP)
            inner: list[dict[str, Any]] = []
            leaf.append({"name": part, "type": kind, "options": inner})
            leaf = inner
        leaf.extend(
            self._typed_options(
                name, schema, options, user, guild, channel, resolved, focused=focused
            )
        )
        data: dict[str, Any] = {
            "id": command["id"] if command else str(self.state.ids.next()),
            "name": path[0],
            "type": 1,
        }
        if outer:
            data["options"] = outer
        if command and command.get("guild_id"):
            data["guild_id"] = command["guild_id"]
        if resolved:
            data["resolved"] = resolved
        return data

    def _typed_options(
        self,
        command: str,
        schema: list[dict[str, Any]] | None,
        values: dict[str, Any],
        user: FakeUser,
        guild: FakeGuild | None,
        channel: FakeChannel,
        resolved: dict[str, dict[str, Any]],
        *,
        focused: str | None,
    ) -> list[dict[str, Any]]:
        if schema is None:
            schema = [{"name": k, "type": _infer_type(v)} for k, v in values.items()]
        by_name = {o["name"]: o for o in schema}
        for key in values:
            if key not in by_name:
                raise ValueError(f"/{command} has no option {key!r}; it has {sorted(by_name)}")
        if focused is None:
            missing = [o["name"] for o in schema if o.get("required") and o["name"] not in values]
            if missing:
                raise ValueError(f"/{command} needs option(s) {missing}")
        result = []
        for option in schema:
            if option["name"] not in values:
                continue
            value = values[option["name"]]
            if option["name"] == focused:
                result.append(
                    {
                        "name": option["name"],
                        "type": option["type"],
                        "value": str(value),
                        "focused": True,
                    }
                )
                continue
            result.append(
                self._typed_option(command, option, value, user, guild, channel, resolved)
            )
        return result

    def _typed_option(
        self,
        command: str,
        option: dict[str, Any],
        value: Any,
        user: FakeUser,
        guild: FakeGuild | None,
        channel: FakeChannel,
        resolved: dict[str, dict[str, Any]],
    ) -> dict[str, Any]:
        kind = option["type"]
        name = option["name"]
        where = f"/{command} {name}"
        if kind in (OPTION_USER, OPTION_MENTIONABLE) and isinstance(value, int):
            value = self.state.users.get(value, value)
        if kind == OPTION_STRING:
            if not isinstance(value, str):
                raise TypeError(f"{where} takes a str, got {value!r}")
            if "min_length" in option and len(value) < option["min_length"]:
                raise ValueError(f"{where} is shorter than {option['min_length']}")
            if "max_length" in option and len(value) > option["max_length"]:
                raise ValueError(f"{where} is longer than {option['max_length']}")
        elif kind == OPTION_INTEGER:
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{where} takes an int, got {value!r}")
        elif kind == OPTION_NUMBER:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"{where} takes a number, got {value!r}")
            value = float(value)
        elif kind == OPTION_BOOLEAN:
            if not isinstance(value, bool):
                raise TypeError(f"{where} takes a bool, got {value!r}")
        elif kind in (OPTION_USER, OPTION_MENTIONABLE) and isinstance(value, FakeUser):
            _resolved_add(resolved, "users", value.id, value.payload())
            if guild is not None and value.id in guild.members:
                perms = self.state.permissions_for(value.id, channel)
                member = guild.members[value.id].payload(permissions=perms, with_user=False)
                _resolved_add(resolved, "members", value.id, member)
            value = str(value.id)
        elif kind in (OPTION_ROLE, OPTION_MENTIONABLE) and isinstance(value, FakeRole):
            _resolved_add(resolved, "roles", value.id, value.payload())
            value = str(value.id)
        elif kind == OPTION_CHANNEL and isinstance(value, FakeChannel):
            types = option.get("channel_types")
            if types and value.type not in types:
                raise ValueError(f"{where} only takes channel types {types}")
            perms = self.state.permissions_for(user.id, value)
            _resolved_add(resolved, "channels", value.id, value.payload(permissions=perms))
            value = str(value.id)
        elif kind == OPTION_ATTACHMENT and isinstance(value, Upload):
            attachment = self._option_attachment(channel, value)
            _resolved_add(resolved, "attachments", attachment.id, attachment.payload())
            value = str(attachment.id)
        else:
            raise TypeError(f"{where} (option type {kind}) cannot take {value!r}")
        if kind in (OPTION_INTEGER, OPTION_NUMBER):
            if "min_value" in option and value < option["min_value"]:
                raise ValueError(f"{where} is below its min_value {option['min_value']}")
            if "max_value" in option and value > option["max_value"]:
                raise ValueError(f"{where} is above its max_value {option['max_value']}")
        choices = option.get("choices")
        if choices and value not in [c["value"] for c in choices]:
            raise ValueError(f"{where} must be one of {[c['value'] for c in choices]}")
        return {"name": name, "type": kind, "value": value}

    def _option_attachment(self, channel: FakeChannel, upload: Upload) -> StoredAttachment:
        attachment_id = self.state.ids.next()
        width, height = sniff_image_size(upload.data)
        attachment = StoredAttachment(
            id=attachment_id,
            filename=upload.filename,
            data=upload.data,
            content_type=guess_content_type(upload.filename),
            url=self.state.attachment_url(channel.id, attachment_id, upload.filename),
            ephemeral=True,
            width=width,
            height=height,
        )
        self.state.attachments[attachment.id] = attachment
        return attachment


def _infer_type(value: Any) -> int:
    if isinstance(value, bool):
        return OPTION_BOOLEAN
    if isinstance(value, int):
        return OPTION_INTEGER
    if isinstance(value, float):
        return OPTION_NUMBER
    if isinstance(value, FakeUser):
        return OPTION_USER
    if isinstance(value, FakeRole):
        return OPTION_ROLE
    if isinstance(value, FakeChannel):
        return OPTION_CHANNEL
    if isinstance(value, Upload):
        return OPTION_ATTACHMENT
    return OPTION_STRING
