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
    assert "`big.png` is over the 100 bytes per-file limit" in plan.notes[0]
    assert "per-message limit" in plan.notes[1] and "at most 3 files" in plan.notes[2]


SLACK = "https://slack.com/api/"
EMU = "http://127.0.0.1:8702/api/"
PATH = "/files-pri/T0001-F0001"


def test_token_goes_to_slack_file_paths():
    ok = kinds.may_send_token
    assert ok(f"https://files.slack.com{PATH}/download/a.png", SLACK)
    assert ok(f"https://files.slack.com{PATH}/a%20b.png", SLACK)  # a percent-encoded name is fine
    assert ok(f"https://files.slack.com:443{PATH}/a.png", SLACK)
    assert ok(f"https://FILES.Slack.com{PATH}/a.png", SLACK)
    assert ok(f"https://files.slack-gov.com{PATH}/x.pdf", "https://slack-gov.com/api/")
    assert ok(f"http://127.0.0.1:8702{PATH}/download/a.png", EMU)  # the API's own origin (emulators, proxies)
    assert ok(f"https://slack.com{PATH}/a.png", SLACK)


def test_token_never_goes_to_other_hosts():
    ok = kinds.may_send_token
    assert not ok(f"http://files.slack.com{PATH}/a.png", SLACK)  # not https
    assert not ok(f"https://files.slack.com.evil.example{PATH}/a.png", SLACK)
    assert not ok(f"https://evil.example/files.slack.com{PATH}/a.png", SLACK)
    assert not ok(f"https://files.slack.com:8443{PATH}/a.png", SLACK)  # another port
    assert not ok(f"https://files.slack.com:{PATH}/a.png", SLACK)
    assert not ok(f"https://files.slack.com:x{PATH}/a.png", SLACK)
    assert not ok(f"http://localhost:8702{PATH}/a.png", EMU)
    assert not ok(f"http://127.0.0.1:9999{PATH}/a.png", EMU)
    assert not ok(f"https://127.0.0.1:8702{PATH}/a.png", EMU)
    for userinfo in ("user@", "@", "u:p@", "files.slack.com@"):  # userinfo, even empty
        assert not ok(f"https://{userinfo}files.slack.com{PATH}/a.png", SLACK)
    assert not ok(f"https://evil.example\\@files.slack.com{PATH}/a.png", SLACK)
    assert not ok(f"//files.slack.com{PATH}/a.png", SLACK) and not ok("", SLACK)


def test_token_never_goes_to_web_api_methods():
    ok = kinds.may_send_token
    for base, api in (("https://slack.com", SLACK), ("https://files.slack.com", SLACK),
                      ("http://127.0.0.1:8702", EMU)):
        for path in ("/api/chat.postMessage?channel=C1&text=pwned", "/api/users.info?user=U1", "/api/auth.test",
                     f"{PATH}/../../api/chat.postMessage", f"{PATH}/download/../../../api/auth.test",
                     "/files-pri/../api/chat.postMessage", f"{PATH}/%2e%2e", f"{PATH}/%2E%2E",
                     f"{PATH}/x%2f..%2f..%2f..%2fapi%2fauth.test", f"{PATH}/x%5c..%5capi", f"{PATH}/%252e%252e",
                     f"{PATH}/%25252e%25252e", f"{PATH}/.", f"{PATH}/", f"{PATH}//a.png", f"/files-pri//{PATH}/a.png",
                     "//files-pri/T1-F1/a.png", f"{PATH}/a\\..\\api", f"{PATH}/a.png/x", f"{PATH}/raw/a.png",
                     "/files-pri/T1-F1-x/a.png", "/files-pri/%54%31-F1/a.png", "/files-tmb/T1-F1/a.png",
                     f"{PATH}/a%00.png", f"{PATH}/a.png#frag", f"{PATH}/a b.png", f"{PATH}/a\t.png",
                     f"{PATH}/\u00e9.png", "/api/files-pri/T1-F1/a.png"):
            assert not ok(base + path, api), base + path


def test_crafted_fields_skip_one_file_each():
    good = {"id": "F1", "name": "a.png", "mimetype": "image/png", "size": 10,
            "url_private_download": "https://files.slack.com/files-pri/T1-F1/download/a.png"}
    crafted = [{"size": "abc"}, {"size": -1}, {"size": True}, {"size": 1.5}, {"mimetype": "x/" + "y" * 3000},
               {"mimetype": ["image/png"]}, {"name": "n" * 10_000}, {"name": {"a": 1}}, {"mode": ["external"]},
               {"url_private_download": 7}, {"url_private_download": None, "url_private": None}]
    files = [{**good, "id": f"F{i}", **change} for i, change in enumerate(crafted)] + [good]
    plan = kinds.plan(files, bot_user_id="UBOT", max_files=10, max_file_bytes=100, max_turn_bytes=1000)
    assert [w.id for w in plan.wanted] == ["F1"] and len(plan.notes) == len(crafted)
    assert all(len(n) < 200 for n in plan.notes)
    assert "Slack described `nnnn" in plan.notes[6] and "…`" in plan.notes[6]
    assert "I couldn't open `a.png`" in plan.notes[-1]  # no URL at all: unreachable, as before


def test_notes_collapse_past_a_few():
    notes = [kinds.skip_note(f"f{i}.zip", "type", mime="application/" + "z" * 3000) for i in range(10)]
    lines = kinds.note_lines(notes)
    assert len(lines) == kinds.NOTE_LINES and lines[:-1] == notes[: kinds.NOTE_LINES - 1]
    assert lines[-1] == "5 more files were skipped, so I answered without them."
    assert sum(map(len, lines)) < 1000 and kinds.note_lines(notes[:6]) == notes[:6]


def test_file_names_cannot_become_markup():
    note = kinds.skip_note("<!channel> & <@U1>.zip", "type", mime="application/zip")
    assert note == "I can't read `<!channel> & <@U1>.zip` (`application/zip`), so I answered without it."
    disguised = kinds.skip_note("[Reset your Slack password](https://evil.example/login).exe", "type")
    assert "`[Reset your Slack password](https://evil.example/login).exe`" in disguised
    assert kinds.literal("a`b``c\n\u202ed*_e_") == "`a'b''c d*_e_`"  # no span can be closed early
    assert kinds.literal("   ") == "`?`" and kinds.literal("x" * 100) == "`" + "x" * 59 + "…`"


def test_a_file_only_message_is_a_turn():
    files = [{"id": "F1", "name": "a.png"}]
    dm = classify_event({"type": "message", "subtype": "file_share", "channel_type": "im", "user": "U1",
                         "channel": "D1", "ts": "2.0", "text": "", "files": files}, "UBOT", "T1")
    assert dm is not None and dm.files == tuple(files) and dm.text == ""
    reply = classify_event({"type": "message", "subtype": "file_share", "channel_type": "channel", "user": "U1",
                            "channel": "C1", "ts": "2.0", "thread_ts": "1.0", "text": "", "files": files}, "UBOT", "T1")
    assert reply is not None and reply.kind == "reply" and reply.files == tuple(files)
