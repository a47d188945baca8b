"""Application command options typed the way Discord's client sends them.

Given the synced schema, `{"prompt": "a fox", "seed": 42}` becomes `[{"name": "prompt", "type": 3,
"value": "a fox"}, {"name": "seed", "type": 4, "value": 42}]`, subcommands wrap their options, and
users, roles, channels and attachments come with their `resolved` objects. What the real client
would refuse (an unknown command, a missing required option, a str for an integer, a value outside
`choices` or the min/max) raises here, so a test cannot send something Discord never would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .models import FakeChannel, FakeRole, FakeUser
from .state import DiscordState

OPTION_SUBCOMMAND = 1
OPTION_GROUP = 2
OPTION_STRING = 3
OPTION_INTEGER = 4
OPTION_BOOLEAN = 5
OPTION_USER = 6
OPTION_CHANNEL = 7
OPTION_ROLE = 8
OPTION_NUMBER = 10
OPTION_ATTACHMENT = 11

# The Python value a test passes for each option type (bool is not an int to Discord).
PYTHON_TYPES: dict[int, type | tuple[type, ...]] = {
    OPTION_STRING: str,
    OPTION_INTEGER: int,
    OPTION_BOOLEAN: bool,
    OPTION_NUMBER: (int, float),
    OPTION_USER: FakeUser,
    OPTION_CHANNEL: FakeChannel,
    OPTION_ROLE: FakeRole,
}


@dataclass
class Upload:
    """A file a test user attaches to an ATTACHMENT command option."""

    filename: str
    data: bytes


class OptionBuilder:
    """Builds the `data` of APPLICATION_COMMAND and AUTOCOMPLETE interactions."""

    def __init__(self, state: DiscordState) -> None:
        self.state = state

    def command_data(
        self,
        user: FakeUser,
        channel: FakeChannel,
        name: str,
        values: dict[str, Any],
        *,
        focused: str | None = None,
    ) -> dict[str, Any]:
        """`data` of an APPLICATION_COMMAND: the command id, typed `options`, and `resolved`."""
        root, *subcommands = name.split()
        command = self.state.commands.find(root)
        if command is None:
            known = sorted(c["name"] for c in self.state.commands.commands)
            raise LookupError(f"/{root} is not registered with the fake Discord (synced: {known})")
        schema: list[dict[str, Any]] = command["options"]
        options: list[dict[str, Any]] = []
        leaf = options
        for part in subcommands:
            sub = next((o for o in schema if o["name"] == part), None)
            if sub is None or sub["type"] not in (OPTION_SUBCOMMAND, OPTION_GROUP):
                raise ValueError(f"/{name}: {part!r} is not a subcommand")
            schema = sub.get("options") or []
            inner: list[dict[str, Any]] = []
            leaf.append({"name": part, "type": sub["type"], "options": inner})
            leaf = inner
        by_name = {o["name"]: o for o in schema}
        for key in values:
            if key not in by_name:
                raise ValueError(f"/{name} has no option {key!r}; it has {sorted(by_name)}")
        missing = [o["name"] for o in schema if o.get("required") and o["name"] not in values]
        if missing and focused is None:
            raise ValueError(f"/{name} needs option(s) {missing}")
        resolved: dict[str, dict[str, Any]] = {}
        for option in schema:
            if option["name"] not in values:
                continue
            value = values[option["name"]]
            if option["name"] == focused:
                leaf.append({**self._typed(option, str(value)), "focused": True})
            else:
                where = f"/{name} {option['name']}"
                leaf.append(self._option(where, option, value, user, channel, resolved))
        data: dict[str, Any] = {"id": command["id"], "name": root, "type": 1}
        if options:
            data["options"] = options
        if resolved:
            data["resolved"] = resolved
        return data

    @staticmethod
    def _typed(option: dict[str, Any], value: Any) -> dict[str, Any]:
        return {"name": option["name"], "type": option["type"], "value": value}

    def _option(
        self,
        where: str,
        option: dict[str, Any],
        value: Any,
        user: FakeUser,
        channel: FakeChannel,
        resolved: dict[str, dict[str, Any]],
    ) -> dict[str, Any]:
        kind = option["type"]
        if kind == OPTION_USER and isinstance(value, int):
            value = self.state.users.get(value, value)
        expected = PYTHON_TYPES.get(kind, Upload)
        # Through a variable, so that `value` stays Any for the checks below.
        right_type = isinstance(value, expected)
        if not right_type or (isinstance(value, bool) and kind in (OPTION_INTEGER, OPTION_NUMBER)):
            raise TypeError(f"{where} (option type {kind}) cannot take {value!r}")
        limits = (
            ("min_length", "max_length", len(value))
            if kind == OPTION_STRING
            else ("min_value", "max_value", value)
        )
        low, high, measure = limits
        if low in option and measure < option[low]:
            raise ValueError(f"{where} is below its {low} {option[low]}")
        if high in option and measure > option[high]:
            raise ValueError(f"{where} is above its {high} {option[high]}")
        choices = [c["value"] for c in option.get("choices") or []]
        if choices and value not in choices:
            raise ValueError(f"{where} must be one of {choices}")

        def resolve(kind_name: str, key: int, payload: dict[str, Any]) -> str:
            resolved.setdefault(kind_name, {})[str(key)] = payload
            return str(key)

        guild = self.state.guild_of(channel)
        if isinstance(value, FakeUser):
            if value.id in guild.members:
                perms = self.state.permissions_for(value.id, channel)
                member = guild.members[value.id].payload(permissions=perms, with_user=False)
                resolve("members", value.id, member)
            value = resolve("users", value.id, value.payload())
        elif isinstance(value, FakeRole):
            value = resolve("roles", value.id, value.payload())
        elif isinstance(value, FakeChannel):
            types = option.get("channel_types")
            if types and value.type not in types:
                raise ValueError(f"{where} only takes channel types {types}")
            perms = self.state.permissions_for(user.id, value)
            value = resolve("channels", value.id, value.payload(permissions=perms))
        elif isinstance(value, Upload):
            attachment = self.state.store_file(channel, value.filename, value.data, ephemeral=True)
            value = resolve("attachments", attachment.id, attachment.payload())
        elif kind == OPTION_NUMBER:
            value = float(value)
        return self._typed(option, value)
