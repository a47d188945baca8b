"""Jobs made from images through the service: permissions, lineage in the store and the PNG,
privacy that follows the parent, sources kept as user data, and the same pixels after a
restart (real SQLite file, real tiny pipeline, real scheduler)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fluxbot.app.derive import Deriver, NotAllowed
from fluxbot.app.export import export_user
from fluxbot.app.root import build_composer
from fluxbot.app.service import JobService
from fluxbot.app.uploads import check_upload
from fluxbot.config import RecoverPolicy, load_settings
from fluxbot.core.edits import Operation
from fluxbot.core.requests import GenerationRequest, JobKind, JobStatus, RequestError
from fluxbot.engine.encoding import encode_result, read_parameters
from fluxbot.engine.pipeline import FluxRunner
from fluxbot.serving.job import JobOutcome
from fluxbot.serving.scheduler import Scheduler
from fluxbot.serving.workers.local import LocalWorker
from fluxbot.store import Store
from fluxbot.store.models import JobRow
from tests.fakes_runner import until

OWNER, STRANGER, ADMIN = 100, 200, 300


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "data")
    yield opened
    await opened.close()


@pytest.fixture
def deriver(store: Store) -> Deriver:
    settings = load_settings(model="tiny-random", min_size=64)
    return Deriver(store, build_composer(settings), upscale_tile=256)


async def _parent(store: Store, runner: FluxRunner, *, private: bool, count: int = 1) -> JobRow:
    request = GenerationRequest("a red fox", 21, width=128, height=128, count=count)
    row = await store.jobs.create(OWNER, request, private=private)
    result = runner.generate([request])[0]
    return await store.finish_job(row, encode_result(result, "tiny-random"))


class Finished:
    def __init__(self) -> None:
        self.rows: list[JobRow] = []

    async def __call__(self, row: JobRow, outcome: JobOutcome) -> None:
        self.rows.append(row)


async def _service(store: Store, runner: FluxRunner) -> tuple[JobService, Finished]:
    worker = LocalWorker("cpu", lambda: runner, encode=lambda r: encode_result(r, "tiny-random"))
    service = JobService(store, Scheduler([worker]))
    finished = Finished()
    service.on_finished(finished)
    await service.start(RecoverPolicy.REQUEUE)
    return service, finished


async def test_a_stranger_cannot_vary_a_private_job(
    store: Store, deriver: Deriver, tiny_runner: FluxRunner
) -> None:
    parent = await _parent(store, tiny_runner, private=True)
    for operation in Operation:
        if operation is Operation.IMAGE:
            continue
        with pytest.raises(NotAllowed, match=f"`{parent.public_id}` is private"):
            await deriver.from_job(parent, STRANGER, operation, pan="left")
    mine = await deriver.from_job(parent, OWNER, Operation.VARY)
    admins = await deriver.from_job(parent, ADMIN, Operation.VARY, admin=True)
    assert mine.private and admins.private  # a private parent gives private children


async def test_anyone_may_vary_a_public_job_and_the_child_is_public(
    store: Store, deriver: Deriver, tiny_runner: FluxRunner
) -> None:
    parent = await _parent(store, tiny_runner, private=False)
    job = await deriver.from_job(parent, STRANGER, Operation.VARY, strength=0.7)
    assert not job.private and job.kind is JobKind.EDIT and job.parent_id == parent.id
    assert job.request.edit is not None and job.request.edit.strength == 0.7


async def test_bad_choices_are_refused_before_anything_is_queued(
    store: Store, deriver: Deriver, tiny_runner: FluxRunner
) -> None:
    parent = await _parent(store, tiny_runner, private=False, count=2)
    with pytest.raises(RequestError, match="image 3 is not allowed: 1 to 2"):
        await deriver.from_job(parent, OWNER, Operation.VARY, index=2)
    with pytest.raises(RequestError, match="strength"):
        await deriver.from_job(parent, OWNER, Operation.VARY, strength=1.5)
    with pytest.raises(RequestError, match="pan 'north'"):
        await deriver.from_job(parent, OWNER, Operation.PAN, pan="north")
    with pytest.raises(RequestError, match="zoom 3"):
        await deriver.from_job(parent, OWNER, Operation.ZOOM, zoom=3)
    queued = await store.jobs.create(OWNER, GenerationRequest("fox", 1))
    with pytest.raises(RequestError, match="a finished job with images"):
        await deriver.from_job(queued, OWNER, Operation.VARY)


async def test_upscale_limits_follow_the_configured_side(
    store: Store, tiny_runner: FluxRunner
) -> None:
    settings = load_settings(model="tiny-random", min_size=64, upscale_max_side=512)
    deriver = Deriver(store, build_composer(settings), upscale_tile=256)
    parent = await _parent(store, tiny_runner, private=False)
    job = await deriver.from_job(parent, OWNER, Operation.UPSCALE)
    assert (job.request.width, job.request.height) == (256, 256)
    base = GenerationRequest("fox", 1)
    again, _ = deriver.build(check_upload(_png((256, 256))), base, 1, Operation.UPSCALE)
    assert (again.width, again.height) == (512, 512)  # an upscale can be upscaled again
    with pytest.raises(RequestError, match="within 512 px"):
        deriver.build(check_upload(_png((512, 512))), base, 1, Operation.UPSCALE)


def _png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_lineage_privacy_and_restart_determinism(
    store: Store, deriver: Deriver, tiny_runner: FluxRunner, tmp_path: Path
) -> None:
    parent = await _parent(store, tiny_runner, private=True)
    service, finished = await _service(store, tiny_runner)
    job = await deriver.from_job(parent, OWNER, Operation.ZOOM, zoom=2.0, seed=77)
    submission = await service.submit_image_job(OWNER, job)
    await until(lambda: bool(finished.rows), within_s=120)
    await service.shutdown()
    row = finished.rows[0]
    assert row.status == JobStatus.DONE
    assert (row.kind, row.operation, row.parent_id, row.private) == (
        JobKind.EDIT,
        "zoom",
        parent.id,
        True,
    )
    assert row.source_sha256 == parent.images[0].sha256
    # The PNG says where it came from.
    png = store.image_path(row.images[0].path).read_bytes()
    params = read_parameters(png)
    assert params["edit"]["operation"] == "zoom" and params["edit"]["parent"] == parent.public_id
    assert params["edit"]["zoom"] == 2.0 and params["seed"] == 77
    # The source is kept with the child's user, by hash.
    source = await store.sources.get(OWNER, row.source_sha256)
    assert source is not None
    assert (await store.sources.load(OWNER, row.source_sha256)) == store.image_path(
        parent.images[0].path
    ).read_bytes()

    # A restart: a new store and a new replica remake the same pixels from the stored job.
    await store.close()
    again_store = await Store.open(
        f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "data"
    )
    try:
        stored = await again_store.jobs.by_public_id(submission.row.public_id)
        assert stored is not None
        worker = LocalWorker("cpu", FluxRunner.tiny, encode=lambda r: encode_result(r, "x"))
        request = await JobService(again_store, Scheduler([worker])).stored_request(stored)
        remade = FluxRunner.tiny().generate([request])[0].images[0]
        with Image.open(io.BytesIO(png)) as first:
            assert np.array_equal(np.asarray(first.convert("RGB")), np.asarray(remade))

        # Sources are the user's data: exported, then forgotten with them.
        report = await export_user(again_store, OWNER, tmp_path / "export.zip")
        assert report.images == 2
        with zipfile.ZipFile(tmp_path / "export.zip") as archive:
            assert f"sources/{row.source_sha256}.png" in archive.namelist()
        source_file = again_store.sources.files.absolute(source.path)
        assert source_file.is_file()
        await again_store.delete_user(OWNER)
        assert not source_file.exists()
        assert await again_store.sources.for_user(OWNER) == []
    finally:
        await again_store.close()


async def test_a_queued_image_job_survives_a_restart(
    store: Store, deriver: Deriver, tiny_runner: FluxRunner
) -> None:
    upload = check_upload(_png((200, 150)))
    base = GenerationRequest("a blue bird", 5, steps=2)
    request = deriver.from_upload(upload, base, 0.5)
    assert request.edit is not None and request.edit.operation is Operation.IMAGE
    assert request.width % 16 == 0 and abs(request.width / request.height - 4 / 3) < 0.05
    await store.sources.save(OWNER, upload.sha256, upload.data, upload.format, 200, 150)
    row = await store.jobs.create(OWNER, request)
    await store.jobs.mark_running(row.id, "cpu")  # the process died here
    service, finished = await _service(store, tiny_runner)
    await until(lambda: bool(finished.rows), within_s=120)
    await service.shutdown()
    done = finished.rows[0]
    assert done.status == JobStatus.DONE and done.operation == "image"
    assert done.source_sha256 == upload.sha256


async def test_a_job_whose_source_is_gone_fails_clearly_at_start(
    store: Store, deriver: Deriver
) -> None:
    upload = check_upload(_png((128, 128)))
    request = deriver.from_upload(upload, GenerationRequest("fox", 1), 0.5)
    row = await store.jobs.create(OWNER, request)  # its source was never stored
    worker = LocalWorker("cpu", FluxRunner.tiny, encode=lambda r: encode_result(r, "x"))
    service = JobService(store, Scheduler([worker]))
    failed = (await service.start(RecoverPolicy.REQUEUE)).failed
    await service.shutdown()
    assert [job.id for job in failed] == [row.id]
    stored = await store.jobs.get(row.id)
    assert stored is not None and stored.status == JobStatus.FAILED
    assert "no longer stored" in (stored.error or "")
