"""Styles end to end on the fake Discord: autocomplete, /imagine style:, rerolls, /styles."""

from __future__ import annotations

from pathlib import Path

from fluxbot.engine.encoding import read_parameters
from tests.bot.conftest import BotHarness, results, wait_for

FILLERS = 30  # more styles than Discord's 25 choices


def styles_file(folder: Path, ink: Path) -> Path:
    (folder / "ink.safetensors").write_bytes(ink.read_bytes())
    lines = [
        "[styles.ink]",
        'lora = "ink.safetensors"',
        "weight = 0.9",
        'trigger_words = ["inkstyle"]',
        'template = "{prompt}, ink drawing"',
        'description = "Ink on paper"',
        "",
    ]
    for i in range(FILLERS):
        lines += [f"[styles.preset{i:02d}]", f'template = "{{prompt}}, look {i}"', ""]
    path = folder / "styles.toml"
    path.write_text("\n".join(lines))
    return path


async def test_style_chosen_in_discord_draws_with_its_lora_and_rerolls_keep_it(
    harness: BotHarness, tiny_loras: dict[str, Path], tmp_path: Path
) -> None:
    path = styles_file(tmp_path, tiny_loras["ink"])
    await harness.start(styles=path)
    server = harness.server

    typed = await server.autocomplete(
        server.alice, "imagine", {"prompt": "a fox", "style": "in"}, "style"
    )
    await wait_for(lambda: typed.choices is not None, what="autocomplete choices")
    assert typed.choices == [{"name": "ink - Ink on paper", "value": "ink"}]
    every = await server.autocomplete(
        server.alice, "imagine", {"prompt": "a fox", "style": ""}, "style"
    )
    await wait_for(lambda: every.choices is not None, what="autocomplete choices")
    assert len(every.choices) == 25  # the first 25 of 31; typing reaches the rest
    late = await server.autocomplete(
        server.alice, "imagine", {"prompt": "a fox", "style": "preset29"}, "style"
    )
    await wait_for(lambda: late.choices is not None, what="autocomplete choices")
    assert [c["value"] for c in late.choices] == ["preset29"]

    await server.slash(
        server.alice, "imagine", {"prompt": "a red fox", "style": "ink", "seed": 5, "steps": 1}
    )
    styled = await server.wait_for_message(lambda m: bool(m.attachments and m.embeds), within_s=240)
    params = read_parameters(styled.attachments[0].data)
    assert params["style"] == "ink"
    assert params["prompt"] == "inkstyle, a red fox, ink drawing"
    assert params["lora"] == {
        "source": str((tmp_path / "ink.safetensors").resolve()),
        "weight": 0.9,
    }

    await server.slash(server.alice, "imagine", {"prompt": "a red fox", "seed": 5, "steps": 1})
    plain = await server.wait_for_message(
        lambda m: bool(m.attachments and m.embeds) and m.id != styled.id, within_s=240
    )
    assert "style" not in read_parameters(plain.attachments[0].data)
    assert plain.attachments[0].data != styled.attachments[0].data

    await wait_for(lambda: len(styled.reactions) >= 3, what="control reactions")
    await server.react(server.alice, styled, "🔁")
    reroll = await server.wait_for_message(
        lambda m: bool(m.attachments and m.embeds) and m.id not in (styled.id, plain.id),
        within_s=240,
    )
    assert read_parameters(reroll.attachments[0].data)["lora"] == params["lora"]
    assert reroll.attachments[0].data == styled.attachments[0].data  # same LoRA, same pixels
    assert len(results(server)) == 3


async def test_styles_lists_them_and_shows_a_public_sample(
    harness: BotHarness, tiny_loras: dict[str, Path], tmp_path: Path
) -> None:
    path = styles_file(tmp_path, tiny_loras["ink"])
    await harness.start(styles=path)
    server = harness.server
    listing = await server.slash(server.alice, "styles")
    await wait_for(lambda: listing.messages, what="the /styles list")
    embed = listing.messages[-1].embeds[0]
    assert listing.ephemeral and embed["title"] == f"Styles ({FILLERS + 1})"
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert len(fields) == 25 and "`inkstyle`" in fields["ink"]
    assert "6 more" in embed["footer"]["text"]

    before = await server.slash(server.alice, "styles", {"name": "ink"})
    await wait_for(lambda: before.messages, what="the style")
    assert not before.messages[-1].attachments
    assert "No sample yet" in before.messages[-1].embeds[0]["footer"]["text"]

    sample_file = harness.data_dir / "styles" / "samples" / "ink.png"
    await server.slash(server.bob, "imagine", {"prompt": "a cat", "style": "ink", "private": True})
    # The result (a progress preview is an attachment too, but has no embed), then the poster's
    # work after the post, where a sample would be kept.
    await server.wait_for_message(lambda m: bool(m.attachments and m.embeds), within_s=240)
    assert harness.bot is not None
    await harness.bot.service.flush()
    assert not sample_file.exists(), "a private result never becomes a sample"
    await server.slash(server.alice, "imagine", {"prompt": "a owl", "style": "ink", "steps": 1})
    await wait_for(sample_file.is_file, within_s=240, what="the public sample")
    public = [m for m in results(server) if m.attachments][-1]
    shown = await server.slash(server.bob, "styles", {"name": "ink"})
    await wait_for(lambda: shown.messages, what="the style with its sample")
    assert shown.messages[-1].attachments[0].data == public.attachments[0].data

    unknown = await server.slash(server.alice, "imagine", {"prompt": "a fox", "style": "nope"})
    await wait_for(lambda: unknown.messages and unknown.messages[-1].content, what="the refusal")
    # Commands defer first; the refusal then comes as a private followup.
    assert unknown.ephemeral or unknown.messages[-1].ephemeral
    assert "one of the styles: ink, preset00" in unknown.messages[-1].content
