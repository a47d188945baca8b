"""Discord's documented limits on messages and commands, answered as Invalid Form Body (50035).

Only the limits a bot can plausibly trip over are checked; the point is that a test fails the way
production would (too many files, a 2001-character message, a sixth button row, a 26th option).
"""

from __future__ import annotations

import re
from typing import Any

from .errors import empty_message, field_error, invalid_form_body, merge_errors
from .models import MESSAGE_FLAG_COMPONENTS_V2

MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_EMBED_TOTAL = 6000
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

BUTTON = 2
TEXT_INPUT = 4
ACTION_ROW = 1
LINK_STYLE = 5
PREMIUM_STYLE = 6
SELECT_TYPES = {3, 5, 6, 7, 8}


class _Errors:
    def __init__(self) -> None:
        self.tree: dict[str, Any] = {}

    def add(self, path: str, code: str, message: str) -> None:
        merge_errors(self.tree, field_error(path, code, message))

    def raise_if_any(self) -> None:
        if self.tree:
            raise invalid_form_body(self.tree)


def _too_long(errors: _Errors, path: str, limit: int) -> None:
    errors.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")


def validate_message(payload: dict[str, Any], attachment_count: int, *, creating: bool) -> None:
    """Check a create/edit message body; `attachment_count` is the message's resulting total."""
    errors = _Errors()
    content = payload.get("content")
    if content is not None and len(str(content)) > MAX_CONTENT:
        _too_long(errors, "content", MAX_CONTENT)

    embeds = payload.get("embeds") or []
    if len(embeds) > MAX_EMBEDS:
        _too_long(errors, "embeds", MAX_EMBEDS)
    total = 0
    for index, embed in enumerate(embeds):
        for key, limit in EMBED_LIMITS.items():
            text = embed.get(key) or ""
            total += len(text)
            if len(text) > limit:
                _too_long(errors, f"embeds.{index}.{key}", limit)
        fields = embed.get("fields") or []
        if len(fields) > 25:
            _too_long(errors, f"embeds.{index}.fields", 25)
        for field_index, embed_field in enumerate(fields):
            for key, limit in EMBED_FIELD_LIMITS.items():
                text = embed_field.get(key) or ""
                total += len(text)
                if len(text) > limit:
                    _too_long(errors, f"embeds.{index}.fields.{field_index}.{key}", limit)
    if total > MAX_EMBED_TOTAL:
        errors.add("embeds", "BASE_TYPE_MAX_LENGTH", "Embed size exceeds maximum size of 6000")

    if attachment_count > MAX_ATTACHMENTS:
        _too_long(errors, "attachments", MAX_ATTACHMENTS)

    flags = int(payload.get("flags") or 0)
    components = payload.get("components") or []
    if not flags & MESSAGE_FLAG_COMPONENTS_V2:
        _validate_action_rows(errors, components)
    errors.raise_if_any()

    has_body = content or embeds or attachment_count or components
    if creating and not (has_body or payload.get("sticker_ids") or payload.get("poll")):
        raise empty_message()


def _validate_action_rows(errors: _Errors, rows: list[dict[str, Any]]) -> None:
    if len(rows) > MAX_ACTION_ROWS:
        _too_long(errors, "components", MAX_ACTION_ROWS)
    seen: set[str] = set()
    for row_index, row in enumerate(rows):
        path = f"components.{row_index}"
        if row.get("type") != ACTION_ROW:
            errors.add(f"{path}.type", "UNION_TYPE_CHOICES", "Value must be an action row.")
            continue
        children = row.get("components") or []
        if not children:
            errors.add(f"{path}.components", "BASE_TYPE_MIN_LENGTH", "Must be 1 or more in length.")
        selects = [c for c in children if c.get("type") in SELECT_TYPES]
        if selects and len(children) > 1:
            errors.add(
                f"{path}.components",
                "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                "The specified component exceeds the maximum width",
            )
        if len(children) > MAX_ROW_BUTTONS:
            _too_long(errors, f"{path}.components", MAX_ROW_BUTTONS)
        for child_index, child in enumerate(children):
            child_path = f"{path}.components.{child_index}"
            custom_id = child.get("custom_id")
            if child.get("type") == BUTTON:
                label = child.get("label") or ""
                if len(label) > MAX_BUTTON_LABEL:
                    _too_long(errors, f"{child_path}.label", MAX_BUTTON_LABEL)
                style = child.get("style")
                if style == LINK_STYLE and not child.get("url"):
                    errors.add(f"{child_path}.url", "BASE_TYPE_REQUIRED", "This field is required")
                if style not in (LINK_STYLE, PREMIUM_STYLE) and not custom_id:
                    errors.add(
                        f"{child_path}.custom_id", "BASE_TYPE_REQUIRED", "This field is required"
                    )
            if custom_id is not None:
                if len(custom_id) > MAX_CUSTOM_ID:
                    _too_long(errors, f"{child_path}.custom_id", MAX_CUSTOM_ID)
                if custom_id in seen:
                    errors.add(
                        f"{child_path}.custom_id",
                        "COMPONENT_CUSTOM_ID_DUPLICATED",
                        "Component custom id cannot be duplicated",
                    )
                seen.add(custom_id)


def validate_commands(commands: list[dict[str, Any]]) -> None:
    """Check a bulk-overwrite body the way Discord rejects bad command definitions."""
    errors = _Errors()
    names: set[tuple[int, str]] = set()
    for index, command in enumerate(commands):
        path = str(index)
        kind = int(command.get("type", 1))
        name = command.get("name") or ""
        if kind == 1 and (not COMMAND_NAME.match(name) or name != name.lower()):
            errors.add(f"{path}.name", "APPLICATION_COMMAND_INVALID_NAME", "Invalid name")
        if (kind, name) in names:
            errors.add(
                f"{path}.name",
                "APPLICATION_COMMANDS_DUPLICATE_NAME",
                "Application command names must be unique",
            )
        names.add((kind, name))
        if kind == 1:
            description = command.get("description") or ""
            if not 1 <= len(description) <= 100:
                errors.add(
                    f"{path}.description",
                    "BASE_TYPE_BAD_LENGTH",
                    "Must be between 1 and 100 in length.",
                )
        _validate_options(errors, f"{path}.options", command.get("options") or [])
    errors.raise_if_any()


def _validate_options(errors: _Errors, path: str, options: list[dict[str, Any]]) -> None:
    if len(options) > MAX_OPTIONS:
        _too_long(errors, path, MAX_OPTIONS)
    seen_optional = False
    names: set[str] = set()
    for index, option in enumerate(options):
        option_path = f"{path}.{index}"
        name = option.get("name") or ""
        if not COMMAND_NAME.match(name) or name != name.lower():
            errors.add(f"{option_path}.name", "APPLICATION_COMMAND_INVALID_NAME", "Invalid name")
        if name in names:
            errors.add(
                f"{option_path}.name",
                "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS",
                "Option names must be unique",
            )
        names.add(name)
        description = option.get("description") or ""
        if not 1 <= len(description) <= 100:
            errors.add(
                f"{option_path}.description",
                "BASE_TYPE_BAD_LENGTH",
                "Must be between 1 and 100 in length.",
            )
        if option.get("type") in (1, 2):
            _validate_options(errors, f"{option_path}.options", option.get("options") or [])
            continue
        if option.get("required"):
            if seen_optional:
                errors.add(
                    f"{option_path}.required",
                    "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                    "Required options must be placed before non-required options",
                )
        else:
            seen_optional = True
        if len(option.get("choices") or []) > MAX_CHOICES:
            _too_long(errors, f"{option_path}.choices", MAX_CHOICES)
