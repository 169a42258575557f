"""The image functions Gemini may call in a turn (issue 21): `generate_image` and `edit_image`.

The chat model decides a picture is the answer and writes the prompt; the bot runs one interaction on
the image model (SLACKBOT_IMAGE_MODEL, or the profile's `image_model`) and uploads each image into the
thread through the gateway (files_upload_v2, paying its budget; the prompt as title and alt text).
Gemini hears what was made and says so in its answer.

* Limits: images per person and per workspace per UTC day (store/images.py, one script for both
  caps); the largest size is a setting. A refusal, a failure or a cap is one plain line under the
  answer (and an error for Gemini); nothing empty is uploaded. A failed generation gives its count back.
* Memory of the thread: each upload's file id and URL (never the bytes) is remembered in the thread's
  store entry with the chain's TTL, as are images people share in turns, so "now make it blue" edits
  the bot's latest picture; the bytes are fetched again from Slack (files/fetch.py) and dropped after.
* Crashes: each call's progress is journalled (tries, then an upload intent, then the file Slack
  accepted). A survivor replaying the turn returns an accepted upload's result without generating or
  uploading again; finds an upload in flight in the thread (by its unique name) before uploading
  again; and runs a generation that was in flight at most once more.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from typing import Annotated, Literal

import aiohttp

from .. import metrics
from ..chat.context import read_thread
from ..chat.journal import TurnJournal
from ..config import Settings
from ..files.fetch import Skipped, download
from ..gemini import Gemini, GeminiError, Image, Usage, add_usage
from ..lookup.functions import _Found
from ..profiles import Profile
from ..slack_out import calls
from ..slack_out.gateway import WorkspaceSlack
from ..store import RedisError, Store
from ..store.images import ImageQuota
from . import rules

log = logging.getLogger(__name__)

AspectRatio = Literal["1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"]
Size = Literal["512", "1K", "2K", "4K"]
_MAX_TRIES = 2  # a generation in flight at a crash runs again once, not more


class ImageFailed(Exception):
    """One image call ends with this plain line (for the person) and no upload."""

    def __init__(self, line: str):
        super().__init__(line)
        self.line = line


class TurnImages:
    """One turn's image functions; `notes` holds the plain lines shown under its answer."""

    def __init__(self, slack: WorkspaceSlack, settings: Settings, store: Store, gemini: Gemini,
                 journal: TurnJournal, profile: Profile):
        self.slack, self.settings, self.store, self.gemini = slack, settings, store, gemini
        self.journal, self.record = journal, journal.record
        self.model = profile.image_model or settings.image_model
        self.usage: Usage | None = None  # the image model's, over the turn
        self.notes: list[str] = []
        self._state = journal.image_state()  # call id -> progress, as journalled
        self._lock = asyncio.Lock()  # calls of one step run concurrently; their journal writes do not

    @property
    def file_ids(self) -> list[str]:
        """The uploads this turn shared (a dead process's too: they are journalled); forgetting deletes them."""
        return [f["id"] for state in self._state.values() for f in state.get("files") or [] if f.get("id")]

    # --- the functions: Gemini sees their names, annotated parameters and first docstring paragraph ---
    async def generate_image(self, prompt: Annotated[str, "What to draw, in detail: subject, style, colours, "
                                                             "any text to show in the picture."],
                             aspect_ratio: Annotated[AspectRatio, "Width:height, 1:1 if not given."] | None = None,
                             size: Annotated[Size, "Resolution, 1K if not given."] | None = None,
                             *, call_id: str = "") -> _Found:
        """Make a picture (an illustration, a diagram, a mock-up, a banner) and share it in this Slack
        thread. Call it when a picture is the answer; then say in words what was made."""
        if not prompt.strip():
            raise ValueError("'prompt' must not be empty")
        return await self._make(call_id, prompt, None, aspect_ratio, size)

    async def edit_image(self, instruction: Annotated[str, "The change to make, e.g. 'make the background white'."],
                         image: Annotated[str, "The file name of an image in this thread; leave empty for the image "
                                               "in this message, else the latest one you made here."] = "",
                         *, call_id: str = "") -> _Found:
        """Change an image from this thread (one a person shared, or one you made earlier) and share the
        result as a new image; the original stays as it is. Use it for follow-ups like 'now make it blue'."""
        if not instruction.strip():
            raise ValueError("'instruction' must not be empty")
        here = [e for f in self.record.files if (e := rules.entry_of(f, "person"))]
        source = rules.pick(image, here, await self._thread_images())
        if source is None:
            return self._failed(rules.NOTHING_TO_EDIT)
        return await self._make(call_id, instruction, source, None, None)

    # --- one call -----------------------------------------------------------------------------------
    async def _make(self, call_id: str, prompt: str, source: dict | None, aspect: str | None, size: str | None) -> _Found:
        state = self._state.setdefault(call_id, {"tries": 0})
        if state.get("files"):  # a dead process's upload Slack accepted: its result, not a second image
            return self._made(state["files"], source)
        if state.get("upload") and (found := await self._find_uploads(state["upload"])):
            await self._uploaded(state, found)
            return self._made(found, source)
        if state["tries"] >= _MAX_TRIES:  # in flight at two crashes: not a third time, and not counted
            if state.pop("counted", False):
                await self._give_back()
                await self._journal()
            return self._failed(rules.FAILED)
        try:
            if not state.get("counted"):
                await self._count()
                state["counted"] = True
            state["tries"] += 1
            await self._journal()
            inputs = [await self._fetch(source)] if source else []
            picture = await self._generate(prompt, inputs, aspect, rules.size_for(size, self.settings.image_max_size))
            del inputs  # the source's bytes go no further
            files = await self._upload(call_id, state, prompt, picture)
        except ImageFailed as exc:
            if state.get("counted") and exc.line != rules.NOT_SHARED:  # nothing was made: not counted
                await self._give_back()
                state["counted"] = False
            await self._journal()
            return self._failed(exc.line)
        return self._made(files, source)

    async def _count(self) -> None:
        s, r = self.settings, self.record
        try:
            verdict = await self.store.images.take(r.team, r.user, _today(), per_user=s.images_per_user_per_day,
                                                   per_workspace=s.images_per_workspace_per_day)
        except (RedisError, OSError):
            raise ImageFailed(rules.FAILED) from None
        if verdict is ImageQuota.PERSON_FULL:
            raise ImageFailed(rules.PERSON_FULL.format(n=s.images_per_user_per_day))
        if verdict is ImageQuota.WORKSPACE_FULL:
            raise ImageFailed(rules.WORKSPACE_FULL.format(n=s.images_per_workspace_per_day))

    async def _give_back(self) -> None:
        try:
            await self.store.images.give_back(self.record.team, self.record.user, _today())
        except (RedisError, OSError):
            pass  # the count lapses with the day

    async def _generate(self, prompt: str, inputs: list[Image], aspect: str | None, size: str):
        started = asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(self.settings.image_timeout_seconds):
                picture = await self.gemini.make_image(prompt, inputs, model=self.model, aspect_ratio=aspect, size=size)
        except (GeminiError, TimeoutError) as exc:
            log.warning("image failed", extra={"model": self.model, "kind": getattr(exc, "kind", "timeout")})
            metrics.IMAGES.labels("failed").inc()
            raise ImageFailed(rules.FAILED) from None
        self.usage = add_usage(self.usage, picture.usage)
        outcome = "refused" if picture.refused else "made" if picture.images else "failed"
        log.info("image generated", extra={"model": self.model, "outcome": outcome, "size": size,
                                           "edit": bool(inputs), "images": len(picture.images),
                                           "latency_ms": int((asyncio.get_running_loop().time() - started) * 1000)})
        if not picture.images:
            metrics.IMAGES.labels(outcome).inc()
            raise ImageFailed(rules.REFUSED if picture.refused else rules.FAILED)
        return picture

    async def _upload(self, call_id: str, state: dict, prompt: str, picture) -> list[dict]:
        """Each image into the thread; the intent journalled first, the accepted file after."""
        r = self.record
        names = [rules.file_name(r.id, call_id, n, img.mime_type) for n, img in enumerate(picture.images, 1)]
        state["upload"] = names
        await self._journal()
        title, alt = rules.one_line(prompt, rules.TITLE_CHARS), rules.one_line(prompt, rules.ALT_CHARS)
        files = []
        for name, img in zip(names, picture.images):
            # one try: the SDK's upload is three calls, and a blind second try could show the image twice
            out = await self.slack.send(calls.upload(r.channel, r.reply_thread_ts or None, img.data, name, title,
                                                     alt_txt=alt), tries=1)
            shared = (out.data or {}).get("files") or [] if out.ok else []
            if not shared:
                metrics.IMAGES.labels("not_shared").inc()
                raise ImageFailed(rules.NOT_SHARED)
            files.append(shared[0])
            metrics.IMAGES.labels("made").inc()
        picture.images.clear()  # the bytes are Slack's now
        await self._uploaded(state, files)
        return files

    async def _uploaded(self, state: dict, files: list[dict]) -> None:
        state["files"] = [{"id": f.get("id"), "name": f.get("name"), "title": f.get("title")} for f in files]
        await self._journal()
        r = self.record
        for f in files:
            if entry := rules.entry_of(f, "bot"):
                try:
                    await self.store.images.remember(r.team, r.channel, r.chain_thread, entry)
                except (RedisError, OSError):
                    log.warning("could not remember an image; a follow-up cannot edit it", extra={"file": entry["id"]})

    async def _find_uploads(self, names: list[str]) -> list[dict] | None:
        """The bot's uploads of these names in the thread (a crash after Slack took them), or None."""
        r = self.record
        if not r.reply_thread_ts:
            return None
        messages = await read_thread(self.slack, self.settings, channel=r.channel, thread_ts=r.reply_thread_ts,
                                     oldest=r.ts)
        found = {f.get("name"): f for m in messages or [] if m.get("bot_id") for f in m.get("files") or []}
        if not all(n in found for n in names):
            return None
        log.info("found an image uploaded before a crash; not uploading it again", extra={"files": len(names)})
        return [found[n] for n in names]

    async def _fetch(self, source: dict) -> Image:
        """The image to edit, fetched from Slack now (capped like any shared file), never kept."""
        timeout = aiohttp.ClientTimeout(total=self.settings.file_fetch_timeout_seconds)
        try:
            async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as http:
                data = await download(http, source["url"], self.settings, cap=self.settings.file_max_bytes)
        except Skipped as exc:
            log.info("image to edit unreadable", extra={"file": source["id"], "reason": exc.reason})
            raise ImageFailed(rules.UNREADABLE) from None
        return Image(source["mime"], bytes(data))

    async def _thread_images(self) -> list[dict]:
        r = self.record
        try:
            return await self.store.images.thread_images(r.team, r.channel, r.chain_thread)
        except (RedisError, OSError):
            return []

    async def remember_shared(self) -> None:
        """Images people share with this message: a later turn in the thread may edit them."""
        r = self.record
        for f in r.files:
            if entry := rules.entry_of(f, "person"):
                try:
                    await self.store.images.remember(r.team, r.channel, r.chain_thread, entry)
                except (RedisError, OSError):
                    return

    async def _journal(self) -> None:
        async with self._lock:
            await self.journal.images(self._state)

    def _made(self, files: list[dict], source: dict | None) -> _Found:
        made = [{"file": f.get("name") or "", "title": f.get("title") or ""} for f in files]
        result: dict = {"shared_in_thread": made}
        if source:
            result["edited"] = source["name"]
        return _Found(result)

    def _failed(self, line: str) -> _Found:
        if line not in self.notes:
            self.notes.append(line)
        return _Found({"error": line + " (the person sees this line under your answer)"})


def _today() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
