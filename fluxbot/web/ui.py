"""The studio's Gradio Blocks: Create, Animate, History and Admin tabs over `Studio`.

Handlers are async and run on the server's event loop, beside the scheduler. Each resolves the
caller from the request (session cookie, or local mode) and lets `Studio` check what they may
do; failures are shown through the shared table of user-facing messages.
"""

from __future__ import annotations

import contextlib
import html
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from fluxbot.app.derived_jobs import IMAGE_ACTIONS
from fluxbot.core.edits import REMIX_STRENGTH, STRENGTH_MAX, STRENGTH_MIN
from fluxbot.core.requests import ASPECT_PRESETS, MAX_COUNT, SEED_MAX, GenerationRequest
from fluxbot.store.models import JobRow
from fluxbot.web.access import Identity
from fluxbot.web.actions import CreateForm, DeviceCard, Studio, Update
from fluxbot.web.errors import message_for

log = logging.getLogger(__name__)

Resolver = Callable[[gr.Request], Identity | None]
GIB = 2**30
DEFAULT_ASPECT_CHOICE = "your default"
REMIX_FROM_IMAGE = "the image"
REMIX_FROM_SCRATCH = "scratch (same seed)"
CSS = """
.flux-card {border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 8px 12px;}
.flux-head {display: flex; justify-content: space-between; align-items: center; gap: 1em;}
.flux-head form {display: inline; margin-left: .5em;}
"""


def studio_theme() -> gr.themes.Base:
    """System fonts only: a self-hosted studio should not send its visitors to a font host."""
    return gr.themes.Soft(
        primary_hue="indigo",
        font=["system-ui", "sans-serif"],
        font_mono=["ui-monospace", "monospace"],
    )


class NotSignedIn(Exception):
    """The request carries no valid session (expired, logged out or forged)."""


def gradio_error(exc: BaseException) -> gr.Error:
    """Every studio handler's failure as the browser shows it: the shared table's sentence."""
    if isinstance(exc, NotSignedIn):
        return gr.Error("Your session has ended: reload the page to log in again.")
    if isinstance(exc, gr.Error):
        return exc
    return gr.Error(message_for(exc))


def _optional_int(value: Any, name: str, low: int, high: int) -> int | None:
    """An empty field is None (inline flags or the user's default decide); else a whole number
    (the composer checks the range and says what is allowed)."""
    text = "" if value is None else str(value).strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise gr.Error(f"{name} must be a whole number from {low} to {high}.") from None


def _image_number(value: Any) -> int:
    """The picked image (1..4); the job's own count is checked when the action runs."""
    text = "" if value is None else str(value).strip()
    if not text:
        return 1
    try:
        return int(float(text))
    except ValueError:
        raise gr.Error("Image must be the number of one of the job's images.") from None


def gallery_items(studio: Studio, row: JobRow | None) -> list[tuple[str, str]]:
    if row is None:
        return []
    return [(str(path), f"seed {seed}") for path, seed in studio.image_paths(row)]


def job_details(row: JobRow | None) -> str:
    """The parameters of a job in Markdown: what a user needs to make it again."""
    if row is None:
        return ""
    request = GenerationRequest.from_params(row.params)
    seeds = ", ".join(str(i.seed) for i in sorted(row.images, key=lambda i: i.index))
    if request.animation:
        seeds = f"{request.seed} → {request.animation.seed_to} ({request.animation.frames} frames)"
    lines = [
        f"**Job** `{row.public_id}` · {row.kind} · {row.status}",
        f"**Prompt** {html.escape(request.prompt)}",
    ]
    if request.negative:
        lines.append(f"**Negative** {html.escape(request.negative)}")
    lines.append(f"**Seed{'s' if request.count > 1 else ''}** {seeds or request.seed}")
    lines.append(f"**Size** {request.width}×{request.height} · **Steps** {request.steps}")
    if request.edit is not None:
        lines.append(f"**From** {html.escape(request.edit.lineage())}")
    timings = row.timings or {}
    device_s = sum(timings.get(k, 0.0) for k in ("text_encode", "denoise", "decode"))
    if device_s:
        lines.append(f"**Device time** {device_s:.2f} s on {row.device or '?'}")
    if row.error:
        lines.append(f"**Error** {html.escape(row.error)}")
    return "\n\n".join(lines)


def device_card(card: DeviceCard) -> str:
    worker, gpu = card.worker, card.gpu
    name = gpu.name if gpu else worker.device

    def fmt(value: float | None, unit: str, digits: int = 0) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}{unit}"

    vram = "n/a"
    if gpu is not None and gpu.memory_used is not None and gpu.memory_total is not None:
        vram = f"{gpu.memory_used / GIB:.1f} / {gpu.memory_total / GIB:.1f} GiB"
    current = f"`{worker.current_job_id}`" if worker.current_job_id else "none"
    return (
        f"<div class='flux-card'><b>{html.escape(name)}</b> ({html.escape(worker.device)})<br>"
        f"utilisation {fmt(gpu.utilization if gpu else None, ' %')} · VRAM {vram} · "
        f"temperature {fmt(gpu.temperature_c if gpu else None, ' °C')}<br>"
        f"state {worker.state} · current job {current} · images done {worker.images_done}"
        "</div>"
    )


@dataclass(frozen=True, slots=True)
class ActionPanel:
    """The image actions under a job (Discord's buttons under a result): which image, the
    buttons, and the remix form."""

    pick: gr.Radio
    buttons: dict[str, gr.Button]
    remix_prompt: gr.Textbox
    remix_strength: gr.Slider
    remix_start: gr.Radio
    remix_button: gr.Button


def action_panel(prefix: str) -> ActionPanel:
    """Vary (Subtle/Strong), Upscale ×2, Zoom out ×1.5/×2, the four pans, and Remix; with
    several images the person picks one (Midjourney's U1..U4 / V1..V4)."""
    pick = gr.Radio(
        [str(n) for n in range(1, MAX_COUNT + 1)],
        value="1",
        label="Image to act on",
        visible=False,  # shown when the job has several images
        elem_id=f"{prefix}-pick",
    )
    buttons: dict[str, gr.Button] = {}
    for codes in (("vary1", "vary2", "up"), ("z15", "z2"), ("pl", "pr", "pu", "pd")):
        with gr.Row():
            for code in codes:
                buttons[code] = gr.Button(
                    IMAGE_ACTIONS[code].label, size="sm", elem_id=f"{prefix}-{code}"
                )
    with gr.Accordion("Remix", open=False):
        remix_prompt = gr.Textbox(label="Prompt (edit it)", lines=2, elem_id=f"{prefix}-remix")
        with gr.Row():
            remix_strength = gr.Slider(
                STRENGTH_MIN,
                STRENGTH_MAX,
                value=REMIX_STRENGTH,
                step=0.05,
                label="Strength: how much may change (from the image)",
            )
            remix_start = gr.Radio(
                [REMIX_FROM_IMAGE, REMIX_FROM_SCRATCH], value=REMIX_FROM_IMAGE, label="Start from"
            )
        remix_button = gr.Button("Remix", elem_id=f"{prefix}-remix-run")
    return ActionPanel(pick, buttons, remix_prompt, remix_strength, remix_start, remix_button)


def pick_choices(row: JobRow | None) -> tuple[list[str], bool]:
    """The image numbers of a job to pick from, and whether there is a choice to make."""
    if row is None:
        return ["1"], False
    count = len(row.images) or int((row.params or {}).get("count", 1))
    return [str(n) for n in range(1, count + 1)], count > 1


def build_blocks(
    studio: Studio, resolve: Resolver, header: Callable[[gr.Request, Identity], str]
) -> gr.Blocks:
    """The whole studio UI; `resolve` finds the caller of each event, `header` their top bar."""

    def who(request: gr.Request) -> Identity:
        identity = resolve(request)
        if identity is None:
            raise NotSignedIn()
        return identity

    max_steps = studio.settings.max_steps
    aspect_choices = [DEFAULT_ASPECT_CHOICE, *ASPECT_PRESETS]

    with gr.Blocks(
        title="fluxbot studio", analytics_enabled=False, delete_cache=(3600, 3600)
    ) as blocks:
        head = gr.HTML()
        with gr.Tabs() as tabs:
            # ---------------------------------------------------------------- Create
            with gr.Tab("Create", id="create"), gr.Row():
                with gr.Column(scale=2):
                    prompt = gr.Textbox(
                        label="Prompt",
                        lines=3,
                        placeholder="a red fox in fresh snow --ar 16:9 --seed 42",
                        elem_id="prompt",
                    )
                    negative = gr.Textbox(label="Negative prompt (doubles the work)")
                    with gr.Row():
                        aspect = gr.Dropdown(
                            aspect_choices, value=DEFAULT_ASPECT_CHOICE, label="Aspect"
                        )
                        seed = gr.Textbox(
                            label="Seed", placeholder=f"0-{SEED_MAX}; empty: your seed profile"
                        )
                    with gr.Row():
                        steps = gr.Textbox(
                            label="Steps", placeholder=f"1-{max_steps}; empty: your default"
                        )
                        count = gr.Textbox(label="Images", placeholder=f"1-{MAX_COUNT}; empty: 1")
                    private = gr.Checkbox(
                        label="Private results (your default in Discord too)", value=False
                    )
                    with gr.Row():
                        create_button = gr.Button("Create", variant="primary", elem_id="create")
                        cancel_button = gr.Button("Cancel", elem_id="cancel")
                with gr.Column(scale=3):
                    status = gr.Markdown("Write a prompt and press Create.", elem_id="status")
                    preview = gr.Image(label="Preview", type="pil", height=160, visible=True)
                    results = gr.Gallery(
                        label="Results", columns=2, format="png", elem_id="results"
                    )
                    details = gr.Markdown(elem_id="details")
                    job_id = gr.Textbox(label="Job", interactive=False, elem_id="job-id")
                    with gr.Row():
                        reroll_button = gr.Button("Reroll (same seed)")
                        new_seed_button = gr.Button("New seed")
                    create_panel = action_panel("create")
                    # Inputs of the `image_action` endpoint for HTTP clients (not shown).
                    action_code = gr.Textbox(visible=False)
                    action_trigger = gr.Button(visible=False)

            async def follow(public_id: str) -> AsyncIterator[tuple[Any, ...]]:
                async for update in studio.follow(public_id):
                    yield _create_outputs(studio, update)

            async def create(
                text: str,
                neg: str,
                aspect_value: str,
                seed_value: str | None,
                steps_value: str | None,
                count_value: str | None,
                private_value: bool,
                request: gr.Request,
            ) -> AsyncIterator[tuple[Any, ...]]:
                try:
                    identity = who(request)
                    form = CreateForm(
                        prompt=text,
                        negative=neg or "",
                        aspect=None if aspect_value == DEFAULT_ASPECT_CHOICE else aspect_value,
                        seed=_optional_int(seed_value, "Seed", 0, SEED_MAX),
                        steps=_optional_int(steps_value, "Steps", 1, max_steps),
                        count=_optional_int(count_value, "Images", 1, MAX_COUNT),
                        private=bool(private_value),
                    )
                    submission, notices = await studio.create(identity, form)
                except Exception as exc:
                    raise gradio_error(exc) from None
                for notice in notices:
                    gr.Info(notice)
                async for outputs in follow(submission.row.public_id):
                    yield outputs

            create_outputs = [status, preview, results, details, job_id]
            create_button.click(
                create,
                [prompt, negative, aspect, seed, steps, count, private],
                create_outputs,
                api_name="create",
                concurrency_limit=None,
                show_progress="minimal",
            )

            async def again(public_id: str, new: bool, request: gr.Request) -> Any:
                try:
                    submission = await studio.again(who(request), public_id, new_seed=new)
                except Exception as exc:
                    raise gradio_error(exc) from None
                async for outputs in follow(submission.row.public_id):
                    yield outputs

            async def reroll(public_id: str, request: gr.Request) -> AsyncIterator[Any]:
                async for outputs in again(public_id, False, request):
                    yield outputs

            async def new_seed(public_id: str, request: gr.Request) -> AsyncIterator[Any]:
                async for outputs in again(public_id, True, request):
                    yield outputs

            reroll_button.click(
                reroll, [job_id], create_outputs, api_name="reroll", concurrency_limit=None
            )
            new_seed_button.click(
                new_seed, [job_id], create_outputs, api_name="new_seed", concurrency_limit=None
            )

            # The image actions: one endpoint for HTTP clients (`image_action`, `remix`), and
            # the buttons of the Create and History tabs, all through `Studio.image_action`.

            async def image_action(
                public_id: str, code: str, image: str | None, request: gr.Request
            ) -> AsyncIterator[tuple[Any, ...]]:
                try:
                    derived = await studio.image_action(
                        who(request), public_id, code, _image_number(image)
                    )
                except Exception as exc:
                    raise gradio_error(exc) from None
                gr.Info(derived.describe())
                async for outputs in follow(derived.row.public_id):
                    yield outputs

            action_trigger.click(
                image_action,
                [job_id, action_code, create_panel.pick],
                create_outputs,
                api_name="image_action",
                concurrency_limit=None,
            )

            async def remix(
                public_id: str,
                image: str | None,
                text: str,
                strength: float | None,
                start: str,
                request: gr.Request,
            ) -> AsyncIterator[tuple[Any, ...]]:
                try:
                    derived = await studio.remix(
                        who(request),
                        public_id,
                        _image_number(image),
                        prompt=text,
                        strength=strength,
                        from_scratch=start == REMIX_FROM_SCRATCH,
                    )
                except Exception as exc:
                    raise gradio_error(exc) from None
                gr.Info(derived.describe())
                async for outputs in follow(derived.row.public_id):
                    yield outputs

            def on_click(
                button: gr.Button,
                fn: Callable[..., Any],
                inputs: list[Any],
                switch: bool,
                api_name: str | bool = False,
            ) -> None:
                """`fn` streams into the Create tab's outputs; from History, show that tab."""
                if switch:
                    button.click(
                        to_create, None, tabs, api_name=False, show_progress="hidden"
                    ).then(fn, inputs, create_outputs, api_name=api_name, concurrency_limit=None)
                else:
                    button.click(
                        fn, inputs, create_outputs, api_name=api_name, concurrency_limit=None
                    )

            def wire(
                panel: ActionPanel, source: gr.Textbox, gallery: gr.Gallery, switch: bool
            ) -> None:
                """The panel's buttons act on the job whose id is in `source`, on the image
                picked in the panel or clicked in `gallery`."""
                source.change(
                    prepare_panel,
                    [source],
                    [panel.pick, panel.remix_prompt],
                    api_name=False,
                    show_progress="hidden",
                )
                gallery.select(picked, None, [panel.pick], api_name=False)
                for code, button in panel.buttons.items():

                    async def run(
                        public_id: str, image: str | None, request: gr.Request, code: str = code
                    ) -> AsyncIterator[tuple[Any, ...]]:
                        async for outputs in image_action(public_id, code, image, request):
                            yield outputs

                    on_click(button, run, [source, panel.pick], switch)
                remix_inputs = [
                    source,
                    panel.pick,
                    panel.remix_prompt,
                    panel.remix_strength,
                    panel.remix_start,
                ]
                on_click(
                    panel.remix_button,
                    remix,
                    remix_inputs,
                    switch,
                    api_name=False if switch else "remix",
                )

            def to_create() -> Any:
                return gr.Tabs(selected="create")

            async def prepare_panel(public_id: str, request: gr.Request) -> tuple[Any, ...]:
                """When a job is shown: its images to pick from, its prompt to remix."""
                identity = resolve(request)
                row = None
                if identity is not None and public_id:
                    with contextlib.suppress(Exception):
                        row = await studio.job(identity, public_id)
                choices, several = pick_choices(row)
                prompt_text = row.prompt if row is not None else ""
                return gr.Radio(choices=choices, value="1", visible=several), prompt_text

            def picked(evt: gr.SelectData) -> Any:
                index = evt.index if isinstance(evt.index, int) else 0
                return gr.Radio(value=str(index + 1))

            wire(create_panel, job_id, results, switch=False)

            async def cancel(public_id: str, request: gr.Request) -> str:
                try:
                    message = await studio.cancel(who(request), public_id)
                except Exception as exc:
                    raise gradio_error(exc) from None
                gr.Info(message)
                return message

            cancel_button.click(
                cancel, [job_id], [status], api_name="cancel", concurrency_limit=None
            )

            # ---------------------------------------------------------------- Animate
            with gr.Tab("Animate", id="animate"), gr.Row():
                with gr.Column(scale=2):
                    anim_prompt = gr.Textbox(label="Prompt", lines=3)
                    with gr.Row():
                        anim_seed = gr.Textbox(
                            label="Start seed", placeholder="empty: your seed profile"
                        )
                        anim_seed_to = gr.Textbox(label="End seed", placeholder="empty: random")
                    anim_frames = gr.Slider(2, 24, value=12, step=1, label="Frames")
                    anim_button = gr.Button("Animate", variant="primary")
                with gr.Column(scale=3):
                    anim_status = gr.Markdown()
                    anim_preview = gr.Image(label="Preview", type="pil", height=160)
                    anim_result = gr.Image(label="Animation", type="filepath")
                    anim_details = gr.Markdown()
                    anim_job = gr.Textbox(label="Job", interactive=False)

            async def animate(
                text: str,
                seed_value: str | None,
                seed_to_value: str | None,
                frames: float,
                request: gr.Request,
            ) -> AsyncIterator[tuple[Any, ...]]:
                try:
                    submission, notices = await studio.animate(
                        who(request),
                        text,
                        frames=int(frames),
                        seed=_optional_int(seed_value, "Start seed", 0, SEED_MAX),
                        seed_to=_optional_int(seed_to_value, "End seed", 0, SEED_MAX),
                    )
                except Exception as exc:
                    raise gradio_error(exc) from None
                for notice in notices:
                    gr.Info(notice)
                async for update in studio.follow(submission.row.public_id):
                    text_, preview_, _items, details_, job_ = _create_outputs(studio, update)
                    if update.row is None:
                        yield text_, preview_, gr.skip(), details_, job_
                        continue
                    paths = studio.image_paths(update.row)
                    yield text_, preview_, str(paths[0][0]) if paths else None, details_, job_

            anim_button.click(
                animate,
                [anim_prompt, anim_seed, anim_seed_to, anim_frames],
                [anim_status, anim_preview, anim_result, anim_details, anim_job],
                api_name="animate",
                concurrency_limit=None,
            )

            # ---------------------------------------------------------------- History
            with gr.Tab("History", id="history") as history_tab:
                with gr.Row():
                    search_text = gr.Textbox(label="Prompt contains", scale=3)
                    search_seed = gr.Textbox(label="Seed", scale=1)
                    search_button = gr.Button("Search", scale=1)
                with gr.Row():
                    newer = gr.Button("◀ Newer", size="sm")
                    page_info = gr.Markdown()
                    older = gr.Button("Older ▶", size="sm")
                page_state = gr.State(0)
                # An input of the `history` endpoint, so HTTP clients can ask for any page.
                first_page = gr.Number(value=0, visible=False, precision=0)
                page_jobs = gr.State([])
                history = gr.Gallery(
                    label="Your jobs, newest first",
                    columns=6,
                    height="auto",
                    allow_preview=False,
                    elem_id="history",
                )
                with gr.Row():
                    open_id = gr.Textbox(label="Job id", scale=3, elem_id="open-id")
                    open_button = gr.Button("Open", scale=1)
                job_view = gr.Markdown(elem_id="job-view")
                job_images = gr.Gallery(label="Images", columns=4, format="png")
                job_links = gr.Markdown()
                with gr.Row():
                    h_reroll = gr.Button("Reroll (same seed)")
                    h_new = gr.Button("New seed")
                    h_delete = gr.Button("Delete job", variant="stop")
                history_panel = action_panel("history")
                gr.Markdown("---")
                with gr.Row():
                    gr.HTML("<a href='export.zip' download>Export all my data (zip)</a>")
                    forget_sure = gr.Checkbox(label="Yes, delete all my jobs, images and seeds")
                    forget_button = gr.Button("Forget me", variant="stop")
                history_note = gr.Markdown()

            async def show_page(
                text: str, seed_value: str | None, page: int, request: gr.Request
            ) -> tuple[Any, ...]:
                try:
                    identity = who(request)
                    wanted = _optional_int(seed_value, "Seed", 0, SEED_MAX)
                    found = await studio.history(
                        identity, page=max(0, int(page)), text=text or "", seed=wanted
                    )
                except Exception as exc:
                    raise gradio_error(exc) from None
                items: list[tuple[str, str]] = []
                ids: list[str] = []
                for row in found.jobs:
                    paths = studio.image_paths(row)
                    if not paths:
                        continue
                    caption = f"{row.prompt[:40]} · seed {row.seed} · {row.public_id}"
                    items.append((str(paths[0][0]), caption))
                    ids.append(row.public_id)
                info = f"Page {found.page + 1} of {found.pages} · {found.total} job(s)"
                return items, info, found.page, ids

            history_outputs = [history, page_info, page_state, page_jobs]

            async def search(
                text: str, seed_value: str | None, page: float | None, request: gr.Request
            ) -> tuple[Any, ...]:
                return await show_page(text, seed_value, int(page or 0), request)

            async def newer_page(
                text: str, seed_value: str | None, page: int, request: gr.Request
            ) -> tuple[Any, ...]:
                return await show_page(text, seed_value, max(0, page - 1), request)

            async def older_page(
                text: str, seed_value: str | None, page: int, request: gr.Request
            ) -> tuple[Any, ...]:
                return await show_page(text, seed_value, page + 1, request)

            search_button.click(
                search,
                [search_text, search_seed, first_page],
                history_outputs,
                api_name="history",
                show_progress="hidden",
            )
            history_tab.select(
                search, [search_text, search_seed, first_page], history_outputs, api_name=False
            )
            paging = [search_text, search_seed, page_state]
            newer.click(newer_page, paging, history_outputs, api_name=False)
            older.click(older_page, paging, history_outputs, api_name=False)

            async def open_job(public_id: str, request: gr.Request) -> tuple[Any, ...]:
                try:
                    identity = who(request)
                    row = await studio.job(identity, public_id)
                    ancestors, children = await studio.lineage(identity, row)
                except Exception as exc:
                    raise gradio_error(exc) from None
                text = job_details(row)
                if ancestors:
                    text += "\n\n**Made from** " + " → ".join(f"`{a.public_id}`" for a in ancestors)
                if children:
                    text += "\n\n**Made from it** " + ", ".join(
                        f"`{c.public_id}` ({c.kind})" for c in children
                    )
                links = " · ".join(
                    f"<a href='download/{row.public_id}/{i.index}' download>"
                    f"Download image {i.index + 1} (seed {i.seed})</a>"
                    for i in sorted(row.images, key=lambda i: i.index)
                )
                return text, gallery_items(studio, row), links, row.public_id

            open_outputs = [job_view, job_images, job_links, open_id]
            open_button.click(open_job, [open_id], open_outputs, api_name="open_job")

            async def pick(ids: list[str], evt: gr.SelectData, request: gr.Request) -> Any:
                index = evt.index if isinstance(evt.index, int) else 0
                if not 0 <= index < len(ids):
                    raise gr.Error("That job is not on this page any more.")
                return await open_job(ids[index], request)

            history.select(pick, [page_jobs], open_outputs, api_name=False)

            async def delete(public_id: str, request: gr.Request) -> tuple[Any, ...]:
                try:
                    message = await studio.delete(who(request), public_id)
                except Exception as exc:
                    raise gradio_error(exc) from None
                return message, [], "", ""

            h_delete.click(
                delete,
                [open_id],
                [history_note, job_images, job_links, open_id],
                api_name="delete",
            )
            on_click(h_reroll, reroll, [open_id], switch=True)
            on_click(h_new, new_seed, [open_id], switch=True)
            wire(history_panel, open_id, job_images, switch=True)

            async def forget(sure: bool, request: gr.Request) -> str:
                if not sure:
                    raise gr.Error("Tick the box first: this deletes all your data for good.")
                try:
                    removal = await studio.forget(who(request))
                except Exception as exc:
                    raise gradio_error(exc) from None
                return f"Deleted your data: {removal.jobs} job(s) and {removal.images} image(s)."

            forget_button.click(forget, [forget_sure], [history_note], api_name="forget_me")

            # ---------------------------------------------------------------- Admin
            with gr.Tab("Admin", id="admin", visible=False) as admin_tab:
                admin_refresh = gr.Button("Refresh")
                cards = gr.HTML()
                queue_table = gr.Dataframe(
                    headers=["job", "user", "position", "state", "device", "eta s"],
                    interactive=False,
                    label="Queue",
                )
                with gr.Row():
                    pause_button = gr.Button("Pause")
                    resume_button = gr.Button("Resume")
                with gr.Row():
                    admin_job = gr.Textbox(label="Job id")
                    admin_cancel_button = gr.Button("Cancel job", variant="stop")
                with gr.Row():
                    admin_user = gr.Textbox(label="User id")
                    ban_button = gr.Button("Ban", variant="stop")
                    unban_button = gr.Button("Unban")
                admin_note = gr.Markdown()

            async def admin_view(request: gr.Request) -> tuple[str, list[list[Any]]]:
                try:
                    identity = who(request)
                    devices = await studio.devices(identity)
                    entries, paused = studio.queue(identity)
                except Exception as exc:
                    raise gradio_error(exc) from None
                html_cards = "".join(device_card(card) for card in devices)
                if paused:
                    html_cards = "<p><b>Paused</b>: no new jobs start.</p>" + html_cards
                rows = [
                    [
                        e.job_id,
                        str(e.user_id),
                        e.position,
                        str(e.state),
                        e.device or "",
                        None if e.eta_s is None else round(e.eta_s, 1),
                    ]
                    for e in entries
                ]
                return html_cards, rows

            admin_refresh.click(admin_view, None, [cards, queue_table], api_name="admin_status")
            admin_tab.select(admin_view, None, [cards, queue_table], api_name=False)

            async def pause(request: gr.Request) -> str:
                try:
                    return studio.set_paused(who(request), True)
                except Exception as exc:
                    raise gradio_error(exc) from None

            async def resume(request: gr.Request) -> str:
                try:
                    return studio.set_paused(who(request), False)
                except Exception as exc:
                    raise gradio_error(exc) from None

            pause_button.click(pause, None, [admin_note], api_name="pause")
            resume_button.click(resume, None, [admin_note], api_name="resume")

            async def admin_cancel(public_id: str, request: gr.Request) -> str:
                try:
                    return await studio.admin_cancel(who(request), public_id)
                except Exception as exc:
                    raise gradio_error(exc) from None

            admin_cancel_button.click(
                admin_cancel, [admin_job], [admin_note], api_name="admin_cancel"
            )

            async def set_ban(user_text: str, banned: bool, request: gr.Request) -> str:
                try:
                    identity = who(request)
                    studio.require_admin(identity)
                    user_id = int((user_text or "").strip())
                except ValueError:
                    raise gr.Error("User id must be a Discord user id (digits).") from None
                except Exception as exc:
                    raise gradio_error(exc) from None
                try:
                    return await studio.set_banned(identity, user_id, banned)
                except Exception as exc:
                    raise gradio_error(exc) from None

            async def ban(user_text: str, request: gr.Request) -> str:
                return await set_ban(user_text, True, request)

            async def unban(user_text: str, request: gr.Request) -> str:
                return await set_ban(user_text, False, request)

            ban_button.click(ban, [admin_user], [admin_note], api_name="ban")
            unban_button.click(unban, [admin_user], [admin_note], api_name="unban")

        async def on_load(request: gr.Request) -> tuple[Any, ...]:
            identity = resolve(request)
            if identity is None:
                ended = "<p>Your session has ended: reload the page to log in.</p>"
                return ended, gr.Tab(), gr.skip()
            user = await studio.store.users.get(identity.user_id)
            private_default = bool(user and user.private_results)
            return header(request, identity), gr.Tab(visible=identity.is_admin), private_default

        blocks.load(on_load, None, [head, admin_tab, private], api_name=False)
    return blocks


def _create_outputs(studio: Studio, update: Update) -> tuple[Any, ...]:
    """(status, preview, results, details, job id) for one update of a job."""
    if update.row is not None:
        return (
            update.text,
            None,
            gallery_items(studio, update.row),
            job_details(update.row),
            (update.job_id),
        )
    bar = ""
    if update.total:
        filled = round(10 * update.step / update.total)
        bar = "  " + "▰" * filled + "▱" * (10 - filled)
    preview = update.preview if update.preview is not None else gr.skip()
    return update.text + bar, preview, gr.skip(), gr.skip(), update.job_id
