"""The command tree: every slash command's options are checked against its declaration first.

Discord validates options before sending them, but the bot must not trust that: a string where
a boolean is declared, a float for a whole number, or an option without `value` or `type` used
to create jobs or to raise inside discord.py's parsing, leaving the interaction unanswered.
Here such a payload is refused with an ephemeral message naming the option (through the error
table, so it is answered at once), and nothing runs.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import discord
from discord import app_commands
from discord.enums import AppCommandOptionType as OptionType

from fluxbot.core.errors import UserError

log = logging.getLogger(__name__)

TYPE_NAMES = {
    OptionType.string: "text",
    OptionType.integer: "whole number",
    OptionType.boolean: "true or false",
    OptionType.user: "user",
    OptionType.channel: "channel",
    OptionType.role: "role",
    OptionType.mentionable: "user or role",
    OptionType.number: "number",
    OptionType.attachment: "file",
}
SNOWFLAKE_TYPES = {
    OptionType.user,
    OptionType.channel,
    OptionType.role,
    OptionType.mentionable,
    OptionType.attachment,
}
NESTING = {OptionType.subcommand.value, OptionType.subcommand_group.value}


class InvalidPayload(UserError, app_commands.AppCommandError):
    """A command arrived with options that do not fit its declaration; `str()` says which."""


def _is_snowflake(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value > 0
    return isinstance(value, str) and value.isdigit()


def _value_problem(param: app_commands.Parameter, value: Any) -> str | None:
    kind = param.type
    wanted = TYPE_NAMES.get(kind, str(kind))
    if kind is OptionType.string:
        ok = isinstance(value, str)
    elif kind is OptionType.integer:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is OptionType.number:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif kind is OptionType.boolean:
        ok = isinstance(value, bool)
    elif kind in SNOWFLAKE_TYPES:
        ok = _is_snowflake(value)
    else:
        ok = True
    if not ok:
        return f"`{param.display_name}` must be {wanted}, not {str(value)[:40]!r}"
    if kind in (OptionType.integer, OptionType.number):
        low, high = param.min_value, param.max_value
        if (low is not None and value < low) or (high is not None and value > high):
            return f"`{param.display_name}` must be from {low} to {high}, not {value}"
    if kind is OptionType.string:
        low, high = param.min_value, param.max_value  # lengths for text
        if (low is not None and len(value) < low) or (high is not None and len(value) > high):
            return f"`{param.display_name}` must be {low} to {high} characters long"
    if param.choices and value not in {choice.value for choice in param.choices}:
        allowed = ", ".join(str(choice.value) for choice in param.choices[:10])
        return f"`{param.display_name}` must be one of {allowed}"
    return None


def options_problem(command: app_commands.Command[Any, ..., Any], options: Any) -> str | None:
    """What is wrong with `options` for `command` (its leaf options), or None."""
    if not isinstance(options, list):
        return "the options are not a list"
    params = {param.display_name: param for param in command.parameters}
    seen: set[str] = set()
    for option in options:
        if not isinstance(option, dict) or not isinstance(option.get("name"), str):
            return "an option has no name"
        name = option["name"]
        param = params.get(name)
        if param is None:
            return f"there is no option `{name[:40]}`"
        if name in seen:
            return f"`{name}` was given twice"
        seen.add(name)
        if "type" not in option:
            return f"`{name}` came without its type"
        if "value" not in option:
            return f"`{name}` came without a value"
        if option["type"] != param.type.value:
            return f"`{name}` must be {TYPE_NAMES.get(param.type, str(param.type))}"
        problem = _value_problem(param, option["value"])
        if problem:
            return problem
    missing = [p.display_name for p in params.values() if p.required and p.display_name not in seen]
    if missing:
        return f"`{missing[0]}` is required"
    return None


def _leaf_options(data: dict[str, Any]) -> Any:
    """The options of the subcommand actually called (discord.py's walk, but checked)."""
    options = data.get("options", [])
    while isinstance(options, list) and options:
        first = options[0]
        if not isinstance(first, dict) or first.get("type") not in NESTING:
            break
        options = first.get("options", [])
    return options


class FluxTree(app_commands.CommandTree):
    """A CommandTree that refuses malformed payloads and answers every failure."""

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        if interaction.type is not discord.InteractionType.application_command:
            return True
        data = interaction.data
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise InvalidPayload("That command arrived without a name; nothing was done.")
        if data.get("type", 1) != 1:
            return True
        try:
            # The ignore below: discord.py's private helper takes the raw payload checked above.
            command, _ = self._get_app_command_options(data)  # type: ignore[arg-type]
        except app_commands.AppCommandError:
            raise
        except Exception as exc:
            raise InvalidPayload("That command arrived malformed; nothing was done.") from exc
        problem = options_problem(command, _leaf_options(cast(dict[str, Any], data)))
        if problem:
            log.info("refused /%s with a malformed option: %s", command.qualified_name, problem)
            raise InvalidPayload(
                f"That command came with a bad option: {problem}. Nothing was done."
            )
        return True

    async def _call(self, interaction: discord.Interaction) -> None:
        try:
            await super()._call(interaction)
        except app_commands.AppCommandError:
            raise
        except Exception as exc:
            # Anything else (discord.py's own parsing) would leave the interaction unanswered.
            raise app_commands.CommandInvokeError(interaction.command, exc) from exc  # type: ignore[arg-type]
