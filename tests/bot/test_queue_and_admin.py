"""Queue positions and fairness across users, admin commands, and a restart with jobs queued."""

from __future__ import annotations

from fluxbot.engine.encoding import read_parameters
from tests.bot.conftest import BotHarness, imagine_queued, results, wait_for


async def test_two_users_are_served_fairly(harness: BotHarness) -> None:
    bot = await harness.start()
    server = harness.server
    bot.engine.scheduler.pause()
    alice_jobs = [await imagine_queued(server, server.alice, f"alice {i}") for i in range(3)]
    bob_job = await imagine_queued(server, server.bob, "bob 0")
    assert "position **2**" in bob_job.original.content
    # Bob's turn comes before Alice's later jobs: her third moves from 3 to 4 (edited live).
    await wait_for(lambda: "position **4**" in alice_jobs[2].original.content, within_s=10)
    bot.engine.scheduler.resume()
    await wait_for(lambda: len(results(server)) == 4, within_s=90, what="four results")
    order = [read_parameters(m.attachments[0].data)["prompt"] for m in results(server)]
    assert order.index("bob 0") <= 1, order


async def test_gpu_for_managers_only(harness: BotHarness) -> None:
    await harness.start()
    server = harness.server
    record = await server.slash(server.admin, "gpu")
    await wait_for(lambda: record.messages, what="the /gpu answer")
    reply = record.messages[-1]
    assert record.ephemeral and reply.embeds
    fields = {f["name"]: f["value"] for f in reply.embeds[0]["fields"]}
    assert {"VRAM", "Utilisation", "Queue depth", "Images done", "Mean s/image"} <= set(fields)
    assert fields["Profile (memory/speed)"] == "full/eager"
    refused = await server.slash(server.alice, "gpu")
    await wait_for(lambda: refused.messages, what="the refusal")
    assert refused.ephemeral and "managers" in refused.messages[-1].content
    assert not refused.messages[-1].embeds
    command = server.command("gpu")
    assert int(command["default_member_permissions"]) == 32  # Manage Server


async def test_admin_listed_by_id_can_pause_and_resume(harness: BotHarness) -> None:
    server = harness.server
    bot = await harness.start(admin_ids=str(server.alice.id))
    record = await server.slash(server.alice, "admin pause")
    await wait_for(lambda: record.messages)
    assert bot.engine.scheduler.paused
    queue = await server.slash(server.alice, "queue")
    await wait_for(lambda: queue.messages)
    assert "paused" in queue.messages[-1].content
    record = await server.slash(server.bob, "admin resume")
    await wait_for(lambda: record.messages)
    assert bot.engine.scheduler.paused, "a non-admin must not resume"
    await server.slash(server.alice, "admin resume")
    await wait_for(lambda: not bot.engine.scheduler.paused)


async def test_jobs_left_queued_are_posted_after_a_restart(harness: BotHarness) -> None:
    bot = await harness.start()
    server = harness.server
    bot.engine.scheduler.pause()
    status = (await imagine_queued(server, server.alice, "survivor", seed=5)).original
    await harness.stop()
    assert not results(server)
    await harness.start()
    result = await server.wait_for_message(lambda m: bool(m.attachments and m.embeds), within_s=60)
    assert read_parameters(result.attachments[0].data)["seed"] == 5
    assert f"<@{server.alice.id}>" in result.content
    # Its status message follows it as a fresh job's does: started, then gone with the result.
    await wait_for(lambda: status.deleted, what="the status message to go")
    shown = [revision.get("content") or "" for revision in status.revisions]
    assert any("is being made" in text or "step" in text for text in shown), shown


async def test_with_recover_fail_users_are_told_after_a_restart(harness: BotHarness) -> None:
    bot = await harness.start()
    server = harness.server
    bot.engine.scheduler.pause()
    status = (await imagine_queued(server, server.bob, "lost")).original
    await harness.stop()
    await harness.start(recover_jobs="fail")
    notice = await server.wait_for_message(lambda m: "interrupted" in m.content, within_s=30)
    assert f"<@{server.bob.id}>" in notice.content and not results(server)
    await wait_for(lambda: "failed" in status.content, what="the status message to say so")


async def test_buttons_on_old_results_work_after_a_restart(harness: BotHarness) -> None:
    await harness.start()
    server = harness.server
    await server.slash(server.alice, "imagine", {"prompt": "an old fox", "seed": 21, "steps": 1})
    original = await server.wait_for_message(
        lambda m: bool(m.attachments and m.embeds), within_s=60
    )
    reroll_id = next(c for c in original.custom_ids() if c.startswith("flux:reroll:"))
    await harness.stop()
    await harness.start()
    await server.click(server.alice, original, reroll_id)
    await wait_for(lambda: len(results(server)) == 2, within_s=60, what="the reroll")
    assert results(server)[-1].attachments[0].data == original.attachments[0].data
