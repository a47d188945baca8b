"""Image safety end to end: the real classifier's verdict stored with each image, and flagged
images sent as spoilers or withheld outside age-restricted channels, per server."""

from __future__ import annotations

import pytest
from PIL import Image

from fluxbot.engine.safety import NUDENET_LABELS, NudeNetClassifier, SafetyVerdict
from tests.bot.conftest import BotHarness, answer, two_servers, wait_for
from tests.fake_discord.models import StoredMessage
from tests.fake_discord.server import FakeDiscord


def posted(server: FakeDiscord) -> list[StoredMessage]:
    """Result messages (they carry the result embed), oldest first."""
    return [m for m in server.messages() if m.embeds and "Job" in str(m.embeds[0])]


async def next_result(server: FakeDiscord, before: int) -> StoredMessage:
    await wait_for(lambda: len(posted(server)) > before, within_s=90, what="a result")
    return posted(server)[-1]


async def test_the_real_classifier_judges_every_image(harness: BotHarness) -> None:
    server = harness.server
    bot = await harness.start()
    assert isinstance(bot.engine.classifier, NudeNetClassifier)
    await server.slash(server.alice, "imagine", {"prompt": "a lighthouse", "steps": 1, "count": 2})
    result = await next_result(server, 0)
    assert [a.filename.startswith("SPOILER_") for a in result.attachments] == [False, False]
    job_id = str(result.embeds[0]["fields"][-1]["value"]).strip("`")
    row = await bot.store.jobs.by_public_id(job_id)
    assert row is not None and len(row.images) == 2
    for image in row.images:
        assert image.safety_verdict == "safe"
        assert set(image.safety_scores or {}) == set(NUDENET_LABELS)


@pytest.fixture
def everything_flagged(monkeypatch: pytest.MonkeyPatch) -> None:
    """The verdict is injected at the classifier's boundary; the rest is the real path."""

    def classify(self: NudeNetClassifier, image: Image.Image) -> SafetyVerdict:
        return SafetyVerdict(True, {"FEMALE_BREAST_EXPOSED": 0.93})

    monkeypatch.setattr(NudeNetClassifier, "classify", classify)


@pytest.mark.usefixtures("everything_flagged")
async def test_flagged_images_are_spoilered_or_withheld_per_server(harness: BotHarness) -> None:
    w = two_servers(harness.server)
    server = w.server
    bot = await harness.start()

    # Server A's default policy: spoiler.
    await server.slash(w.author, "imagine", {"prompt": "a statue", "steps": 1})
    spoilered = await next_result(server, 0)
    assert spoilered.attachments[0].filename.startswith("SPOILER_")
    assert "flagged" in str(spoilered.embeds[0])
    job_id = str(spoilered.embeds[0]["fields"][-1]["value"]).strip("`")
    row = await bot.store.jobs.by_public_id(job_id)
    assert row is not None and row.images[0].flagged
    assert row.images[0].safety_scores == {"FEMALE_BREAST_EXPOSED": 0.93}

    # In an age-restricted channel it is posted as it is.
    await server.slash(w.author, "imagine", {"prompt": "a statue", "steps": 1}, channel=w.nsfw_a)
    plain = await next_result(server, 1)
    assert not plain.attachments[0].filename.startswith("SPOILER_")

    # Withhold in A: the result comes without the image, with a notice to its owner.
    await answer(server, w.manager, "server settings", {"image_safety": "withhold"})
    await server.slash(w.author, "imagine", {"prompt": "another statue", "steps": 1})
    withheld = await next_result(server, 2)
    assert not withheld.attachments
    assert "withheld" in str(withheld.embeds[0]) and f"<@{w.author.id}>" in withheld.content
    withheld_id = str(withheld.embeds[0]["fields"][-1]["value"]).strip("`")
    kept = await bot.store.jobs.by_public_id(withheld_id)
    assert kept is not None and len(kept.images) == 1, "kept in the owner's history"
    history = await answer(server, w.author, "history")
    assert withheld_id in str(history.messages[-1].embeds)

    # /show: still withheld in a plain channel, posted in an age-restricted one.
    again = await answer(server, w.author, "show", {"job_id": withheld_id})
    assert not again.messages[-1].attachments
    shown = await answer(server, w.author, "show", {"job_id": withheld_id}, channel=w.nsfw_a)
    assert shown.messages[-1].attachments

    # Server B keeps its own (default) policy: spoiler.
    count = len(posted(server))
    await server.slash(
        w.author, "imagine", {"prompt": "a statue in B", "steps": 1}, channel=w.channel_b
    )
    in_b = await next_result(server, count)
    assert in_b.attachments[0].filename.startswith("SPOILER_")

    # Managers list their server's flagged jobs, and only theirs.
    listed = await answer(server, w.manager, "server flagged")
    text = listed.messages[-1].content
    assert job_id in text and withheld_id in text
    b_id = str(in_b.embeds[0]["fields"][-1]["value"]).strip("`")
    assert b_id not in text
    everywhere = await answer(server, w.owner, "server flagged", {"all_servers": True})
    assert b_id in everywhere.messages[-1].content
    refused = await answer(server, w.member, "server flagged")
    assert "managers" in refused.messages[-1].content
