"""Discord's documented limits on messages and commands, answered as Invalid Form Body (50035).

Only the limits a bot can plausibly trip over are checked; the point is that a test fails the way
production would (too many files, a 2001-character message, a sixth button row, a 26th option).
fluxbot sends action rows of buttons (no select menus, no Components V2), so that is all the
component check knows.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import empty_message, field_error, invalid_form_body, merge_errors

MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_EMBED_TOTAL = 6000
MAX_EMBED_FIELDS = 25
MAX_ATTACHMENTS = 10
MAX_ACTION_ROWS = 5
MAX_ROW_BUTTONS = 5
MAX_CUSTOM_ID = 100
MAX_BUTTON_LABEL = 80
MAX_OPTIONS = 25
MAX_CHOICES = 25
COMMAND_NAME = re.compile(r"^[-_'\w]{1,32}$")

EMBED_LIMITS = {"title": 256, "description": 4096}
EMBED_FIELD_LIMITS = {"name": 256, "value": 1024}

ACTION_ROW = 1
BUTTON = 2


class _Errors:
    def __init__(self) -> None:
        self.tree: dict[str, Any] = {}

    def add(self, path: str, code: str, message: str) -> None:
        merge_errors(self.tree, field_error(path, code, message))

    def too_long(self, path: str, limit: int) -> None:
        self.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")

    def bad_length(self, path: str, low: int, high: int) -> None:
        self.add(path, "BASE_TYPE_BAD_LENGTH", f"Must be between {low} and {high} in length.")

    def raise_if_any(self) -> None:
        if self.tree:
            raise invalid_form_body(self.tree)


def validate_message(payload: dict[str, Any], attachment_count: int, *, creating: bool) -> None:
    """Check a create/edit message body; `attachment_count` is the message's resulting total."""
    errors = _Errors()
    content = payload.get("content")
    if content is not None and len(str(content)) > MAX_CONTENT:
        errors.too_long("content", MAX_CONTENT)
    embeds = payload.get("embeds") or []
    _check_embeds(errors, embeds)
    if attachment_count > MAX_ATTACHMENTS:
        errors.too_long("attachments", MAX_ATTACHMENTS)
    components = payload.get("components") or []
    _check_action_rows(errors, components)
    errors.raise_if_any()
    if creating and not (content or embeds or attachment_count or components):
        raise empty_message()


def _check_embeds(errors: _Errors, embeds: list[dict[str, Any]]) -> None:
    if len(embeds) > MAX_EMBEDS:
        errors.too_long("embeds", MAX_EMBEDS)
    total = 0
    for index, embed in enumerate(embeds):
        texts = [
            (f"embeds.{index}.{key}", embed.get(key), limit) for key, limit in EMBED_LIMITS.items()
        ]
        fields = embed.get("fields") or []
        if len(fields) > MAX_EMBED_FIELDS:
            errors.too_long(f"embeds.{index}.fields", MAX_EMBED_FIELDS)
        for number, item in enumerate(fields):
            path = f"embeds.{index}.fields.{number}"
            texts += [
                (f"{path}.{key}", item.get(key), limit) for key, limit in EMBED_FIELD_LIMITS.items()
            ]
        for path, text, limit in texts:
            total += len(text or "")
            if len(text or "") > limit:
                errors.too_long(path, limit)
    if total > MAX_EMBED_TOTAL:
        errors.add("embeds", "BASE_TYPE_MAX_LENGTH", "Embed size exceeds maximum size of 6000")


def _check_action_rows(errors: _Errors, rows: list[dict[str, Any]]) -> None:
    if len(rows) > MAX_ACTION_ROWS:
        errors.too_long("components", MAX_ACTION_ROWS)
    seen: set[str] = set()
    for row_index, row in enumerate(rows):
        path = f"components.{row_index}"
        buttons = row.get("components") or []
        if row.get("type") != ACTION_ROW or not 1 <= len(buttons) <= MAX_ROW_BUTTONS:
            errors.add(path, "UNION_TYPE_CHOICES", "An action row of 1 to 5 buttons is required.")
            continue
        for index, button in enumerate(buttons):
            button_path = f"{path}.components.{index}"
            custom_id = button.get("custom_id") or ""
            if button.get("type") != BUTTON:
                errors.add(f"{button_path}.type", "UNION_TYPE_CHOICES", "Must be a button.")
            if len(button.get("label") or "") > MAX_BUTTON_LABEL:
                errors.too_long(f"{button_path}.label", MAX_BUTTON_LABEL)
            if not 1 <= len(custom_id) <= MAX_CUSTOM_ID:
                errors.bad_length(f"{button_path}.custom_id", 1, MAX_CUSTOM_ID)
            if custom_id in seen:
                errors.add(
                    f"{button_path}.custom_id",
                    "COMPONENT_CUSTOM_ID_DUPLICATED",
                    "Component custom id cannot be duplicated",
                )
            seen.add(custom_id)


def validate_commands(commands: list[dict[str, Any]]) -> None:
    """Check a bulk-overwrite body the way Discord rejects bad command definitions."""
    errors = _Errors()
    names: set[str] = set()
    for index, command in enumerate(commands):
        _check_named(errors, str(index), command, names)
        _check_options(errors, f"{index}.options", command.get("options") or [])
    errors.raise_if_any()


def _check_named(errors: _Errors, path: str, item: dict[str, Any], names: set[str]) -> None:
    """A command's or an option's name (lower case, unique among its siblings) and description."""
    name = item.get("name") or ""
    if not COMMAND_NAME.match(name) or name != name.lower():
        errors.add(f"{path}.name", "APPLICATION_COMMAND_INVALID_NAME", "Invalid name")
    if name in names:
        errors.add(f"{path}.name", "APPLICATION_COMMANDS_DUPLICATE_NAME", "Names must be unique")
    names.add(name)
    if not 1 <= len(item.get("description") or "") <= 100:
        errors.bad_length(f"{path}.description", 1, 100)


def _check_options(errors: _Errors, path: str, options: list[dict[str, Any]]) -> None:
    if len(options) > MAX_OPTIONS:
        errors.too_long(path, MAX_OPTIONS)
    seen_optional = False
    names: set[str] = set()
    for index, option in enumerate(options):
        option_path = f"{path}.{index}"
        _check_named(errors, option_path, option, names)
        if option.get("type") in (1, 2):  # a subcommand or a group
            _check_options(errors, f"{option_path}.options", option.get("options") or [])
            continue
        if not option.get("required"):
            seen_optional = True
        elif seen_optional:
            errors.add(
                f"{option_path}.required",
                "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                "Required options must be placed before non-required options",
            )
        if len(option.get("choices") or []) > MAX_CHOICES:
            errors.too_long(f"{option_path}.choices", MAX_CHOICES)
