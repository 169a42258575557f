"""Which Slack file becomes which content part, caps and host rules (pure: slackbot.files.kinds)."""

from __future__ import annotations

import typing

from google.genai._gaos.types import interactions as sdk

from slackbot.chat.intake import classify as classify_event
from slackbot.files import kinds


def test_mime_table_is_the_sdks_own():
    for name, part in (("ImageContentMimeType", "image"), ("DocumentContentMimeType", "document"),
                       ("AudioContentMimeType", "audio"), ("VideoContentMimeType", "video")):
        literal = typing.get_args(getattr(sdk, name))[0]
        assert {m for m, p in kinds.MIME_PARTS.items() if p == part} == set(typing.get_args(literal))
    assert kinds.MIME_PARTS["application/pdf"] == "document" and kinds.MIME_PARTS["text/csv"] == "document"


def test_files_become_the_right_part():
    c = kinds.classify
    assert c({"name": "a.png", "mimetype": "image/png"}) == ("image", "image/png")
    assert c({"name": "a.jpg", "mimetype": "image/jpg"}) == ("image", "image/jpeg")  # alias to the SDK's spelling
    assert c({"name": "a.mov", "mimetype": "video/quicktime"}) == ("video", "video/mov")
    assert c({"name": "deck.pptx", "mimetype": "application/octet-stream"})[0] == "document"
    assert c({"name": "server.log", "mimetype": "text/plain"}) == ("text", "text/plain")
    assert c({"name": "values.yaml", "mimetype": "application/octet-stream"})[0] == "text"
    assert c({"name": "Dockerfile", "mimetype": ""})[0] == "text"
    assert c({"name": "data.csv", "mimetype": "text/csv"}) == ("document", "text/csv")
    assert c({"name": "a.zip", "mimetype": "application/zip"}) is None
    assert c({"name": "a.exe", "mimetype": "application/octet-stream"}) is None


def test_plan_caps_in_order_and_ignores_the_bots_files():
    f = lambda name, size, **kw: {"id": name, "name": name, "mimetype": "image/png", "size": size,  # noqa: E731
                                  "url_private_download": "https://files.slack.com/x", "user": "U1", **kw}
    plan = kinds.plan([f("a.png", 10), f("own.png", 10, user="UBOT"), f("big.png", 101), f("b.png", 60),
                       f("c.png", 50), f("d.png", 1), f("e.png", 1), f("ext.png", 1, mode="external")],
                      bot_user_id="UBOT", max_files=3, max_file_bytes=100, max_turn_bytes=100)
    assert [w.id for w in plan.wanted] == ["a.png", "b.png", "d.png"]
    assert len(plan.notes) == 4 and not any("own.png" in n for n in plan.notes)
    assert "“big.png” is over the 100 bytes per-file limit" in plan.notes[0]
    assert "per-message limit" in plan.notes[1] and "at most 3 files" in plan.notes[2]


def test_token_only_goes_to_slacks_file_host():
    ok = kinds.allowed_origin
    assert ok("https://files.slack.com/files-pri/T1-F1/download/a.png", "https://slack.com/api/")
    assert ok("https://files.slack-gov.com/files-pri/x", "https://slack-gov.com/api/")
    assert ok("http://127.0.0.1:8702/_emu/files/F1", "http://127.0.0.1:8702/api/")  # exactly the API's origin
    assert not ok("http://files.slack.com/x", "https://slack.com/api/")  # not https
    assert not ok("https://files.slack.com.evil.example/x", "https://slack.com/api/")
    assert not ok("https://evil.example/files.slack.com", "https://slack.com/api/")
    assert not ok("https://user@files.slack.com/x", "https://slack.com/api/")
    assert not ok("http://localhost:8702/_emu/files/F1", "http://127.0.0.1:8702/api/")
    assert not ok("http://127.0.0.1:9999/_emu/files/F1", "http://127.0.0.1:8702/api/")


def test_file_names_cannot_become_markup():
    note = kinds.skip_note("<!channel> & <@U1>.zip", "type", mime="application/zip")
    assert "<" not in note and ">" not in note and "&lt;!channel&gt; &amp; &lt;@U1&gt;.zip" in note


def test_a_file_only_message_is_a_turn():
    files = [{"id": "F1", "name": "a.png"}]
    dm = classify_event({"type": "message", "subtype": "file_share", "channel_type": "im", "user": "U1",
                         "channel": "D1", "ts": "2.0", "text": "", "files": files}, "UBOT", "T1")
    assert dm is not None and dm.files == tuple(files) and dm.text == ""
    reply = classify_event({"type": "message", "subtype": "file_share", "channel_type": "channel", "user": "U1",
                            "channel": "C1", "ts": "2.0", "thread_ts": "1.0", "text": "", "files": files}, "UBOT", "T1")
    assert reply is not None and reply.kind == "reply" and reply.files == tuple(files)
