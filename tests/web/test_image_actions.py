"""The image actions from the studio (vary, upscale, zoom out, pan, remix) through its real HTTP
API: each makes a child job of the picked image with the operation, parent and size that
Discord's buttons give, with the lineage shown; and a stranger cannot act on a private job."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from gradio_client import Client
from PIL import Image

from fluxbot.app.derived_jobs import IMAGE_ACTIONS
from fluxbot.core.edits import Operation, PanDirection, pan_layout, upscale_size
from fluxbot.core.requests import JobKind, JobStatus
from fluxbot.store.models import JobRow
from tests.web.conftest import Studios
from tests.web.test_login import log_in, studio_client

ACTION_CODES = [code for code, action in IMAGE_ACTIONS.items() if action.operation != "remix"]


def _row(studios: Studios, public_id: str) -> JobRow:
    row = studios.call(studios.store.jobs.by_public_id(public_id))
    assert row is not None, public_id
    return row


def _children(studios: Studios, parent: JobRow) -> list[JobRow]:
    return list(studios.call(studios.store.jobs.children(parent.id)))


def _create(client: Client, prompt: str, *, count: int = 1, private: bool = False) -> str:
    *_, job_id = client.predict(
        prompt, "", "1:1", "21", "1", str(count), private, api_name="/create"
    )
    return str(job_id)


@pytest.fixture(scope="module")
def parent(studios: Studios, client: Client) -> JobRow:
    """A finished job of two images, made by the local owner from the Create tab."""
    row = _row(studios, _create(client, "a harbour at dawn", count=2))
    assert row.status is JobStatus.DONE and len(row.images) == 2
    return row


def _expected_size(studios: Studios, code: str, width: int, height: int) -> tuple[int, int]:
    action = IMAGE_ACTIONS[code]
    limits = studios.engine.composer.limits
    if action.operation is Operation.UPSCALE:
        return upscale_size(width, height, limits.upscale_max_side)
    if action.operation is Operation.PAN:
        direction = PanDirection(action.options["pan"])
        layout = pan_layout(
            width, height, direction, limits.max_width, limits.max_height, limits.max_megapixels
        )
        return layout.canvas
    return width, height  # vary keeps the size; zoom out keeps the canvas and shrinks the image


@pytest.mark.parametrize("code", ACTION_CODES)
def test_each_image_action_makes_a_child_of_the_picked_image(
    studios: Studios, client: Client, parent: JobRow, code: str
) -> None:
    action = IMAGE_ACTIONS[code]
    status, _preview, gallery, details, child_id = client.predict(
        parent.public_id, code, "2", api_name="/image_action"
    )
    assert status == f"Done: `{child_id}`" and len(gallery) == 1
    child = _row(studios, child_id)
    assert child.status is JobStatus.DONE and child.kind == JobKind.EDIT
    assert (child.parent_id, child.operation) == (parent.id, str(action.operation))
    assert child.user_id == parent.user_id and not child.private
    edit = child.params["edit"]
    assert edit["parent"] == parent.public_id and edit["parent_index"] == 1
    assert child.source_sha256 == parent.images[1].sha256
    for option, value in action.options.items():
        assert edit[option] == value, option
    size = _expected_size(studios, code, parent.params["width"], parent.params["height"])
    assert (child.params["width"], child.params["height"]) == size
    with Image.open(studios.store.image_path(child.images[0].path)) as image:
        assert image.size == size
    # The lineage, as Discord's /show and /history word it.
    assert f"of `{parent.public_id}` image 2" in details
    view, *_ = client.predict(child_id, api_name="/open_job")
    assert f"Made from** `{parent.public_id}`" in view


def test_remix_from_the_image_with_an_edited_prompt(
    studios: Studios, client: Client, parent: JobRow
) -> None:
    *_, details, child_id = client.predict(
        parent.public_id, "1", "a harbour at dusk", 0.5, "the image", api_name="/remix"
    )
    child = _row(studios, child_id)
    assert (child.parent_id, child.operation, child.prompt) == (
        parent.id,
        "remix",
        "a harbour at dusk",
    )
    assert child.params["edit"]["strength"] == 0.5
    assert child.source_sha256 == parent.images[0].sha256
    assert f"remix (strength 0.5) of `{parent.public_id}`" in details


def test_remix_from_scratch_keeps_the_seed(
    studios: Studios, client: Client, parent: JobRow
) -> None:
    *_, child_id = client.predict(
        parent.public_id, "2", "a harbour in fog", 0.5, "scratch (same seed)", api_name="/remix"
    )
    child = _row(studios, child_id)
    assert child.operation == "remix" and child.source_sha256 is None
    assert child.seed == parent.images[1].seed and child.prompt == "a harbour in fog"
    assert child.params["edit"] == {
        "operation": "remix",
        "parent": parent.public_id,
        "parent_index": 1,
    }


def test_bad_action_input_gets_the_shared_message_and_makes_no_job(
    studios: Studios, client: Client, parent: JobRow
) -> None:
    before = len(_children(studios, parent))
    with pytest.raises(Exception, match="image 4 is not allowed: 1 to 2"):
        client.predict(parent.public_id, "vary1", "4", api_name="/image_action")
    with pytest.raises(Exception, match=r"action .*spin.* is not allowed"):
        client.predict(parent.public_id, "spin", "1", api_name="/image_action")
    # The strength slider's range is checked before the studio's own check_strength.
    with pytest.raises(Exception, match=r"maximum value 1\.0"):
        client.predict(parent.public_id, "1", "a cat", 2.0, "the image", api_name="/remix")
    with pytest.raises(Exception, match="image 3 is not allowed: 1 to 2"):
        client.predict(parent.public_id, "3", "a cat", 0.5, "the image", api_name="/remix")
    assert len(_children(studios, parent)) == before


@pytest.fixture(scope="module")
def alice(studios: Studios) -> Iterator[Client]:
    browser = log_in(studios, studios.discord.alice)
    client = studio_client(studios, browser)
    yield client
    client.close()
    browser.close()


@pytest.fixture(scope="module")
def bob(studios: Studios) -> Iterator[tuple[httpx.Client, Client]]:
    browser = log_in(studios, studios.discord.bob)
    client = studio_client(studios, browser)
    yield browser, client
    client.close()
    browser.close()


def test_a_stranger_cannot_act_on_a_private_job_and_its_children_stay_private(
    studios: Studios, alice: Client, bob: tuple[httpx.Client, Client]
) -> None:
    browser, stranger = bob
    secret = _row(studios, _create(alice, "a secret garden", private=True))
    assert secret.private and secret.user_id == studios.discord.alice.id

    attempts: list[tuple[tuple[Any, ...], str]] = [
        ((secret.public_id, "vary1", "1"), "/image_action"),
        ((secret.public_id, "z2", "1"), "/image_action"),
        ((secret.public_id, "1", "a public garden", 0.5, "the image"), "/remix"),
        ((secret.public_id,), "/reroll"),
        ((secret.public_id,), "/new_seed"),
        ((secret.public_id,), "/open_job"),
    ]
    for args, endpoint in attempts:
        with pytest.raises(Exception, match="is private"):
            stranger.predict(*args, api_name=endpoint)
    for args, endpoint in (((secret.public_id,), "/delete"), ((secret.public_id,), "/cancel")):
        with pytest.raises(Exception, match="Only the person who asked for this image"):
            stranger.predict(*args, api_name=endpoint)
    assert browser.get(f"/download/{secret.public_id}/0").status_code == 404
    # Checked on the state: nothing was made from it, and it is still there.
    assert _children(studios, secret) == []
    assert _row(studios, secret.public_id).status is JobStatus.DONE

    # Its owner may; the child is private too.
    *_, child_id = alice.predict(secret.public_id, "vary2", "1", api_name="/image_action")
    child = _row(studios, child_id)
    assert child.parent_id == secret.id and child.private and child.operation == "vary"


def test_anyone_may_act_on_a_public_job_and_the_child_is_theirs(
    studios: Studios, alice: Client, bob: tuple[httpx.Client, Client]
) -> None:
    _, other = bob
    shown = _row(studios, _create(alice, "a public fountain"))
    assert not shown.private
    *_, child_id = other.predict(shown.public_id, "vary1", "1", api_name="/image_action")
    child = _row(studios, child_id)
    assert child.parent_id == shown.id and child.user_id == studios.discord.bob.id
    assert not child.private
    # Bob's variation is his: Alice cannot delete it.
    with pytest.raises(Exception, match="Only the person who asked for this image"):
        alice.predict(child_id, api_name="/delete")
    assert _row(studios, child_id).status is JobStatus.DONE


def test_a_reroll_of_a_variation_gives_the_same_pixels(
    studios: Studios, client: Client, parent: JobRow
) -> None:
    """A job made from an image runs again from that image (its bytes come from the store)."""
    *_, varied_id = client.predict(parent.public_id, "vary1", "1", api_name="/image_action")
    status, *_, again_id = client.predict(varied_id, api_name="/reroll")
    assert status == f"Done: `{again_id}`"
    varied, again = _row(studios, varied_id), _row(studios, again_id)
    assert (again.parent_id, again.kind, again.operation) == (varied.id, JobKind.REROLL, "vary")
    assert [i.sha256 for i in again.images] == [i.sha256 for i in varied.images]
