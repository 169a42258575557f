"""The delivery planner's decisions (pure): which budget carries the next piece of an answer."""

from __future__ import annotations

import pytest

from slackbot.slack_out.plan import Intent, Policy, Segment, View, continuation_due, display_end, next_step
from slackbot.slack_out.render import block_end, render_span, starts_block

POLICY = Policy(limit=400, min_interval=1.0, stall_after=4.0, continue_chars=100, final_wait=0.5,
                stream_max_age=240.0)
NOW = 100.0


def view(text, *, done=False, segs=(), free=None, last_visible=NOW):
    return View(text, done, NOW, list(segs), dict(free or {}), last_visible)


def busy(*budgets, until=NOW + 30):
    return {b: until for b in budgets}


def test_first_words_start_a_native_stream_when_tier_2_has_room():
    step = next_step(view("Hello there. More"), POLICY)
    assert (step.op, step.start, step.end) == ("start", 0, len("Hello there. "))


def test_without_native_room_a_message_grown_by_edits_first_shows_a_whole_paragraph():
    no_native = Policy(**{**POLICY.__dict__, "native": False})
    assert next_step(view("Hello there. More"), no_native).op == "wait", "the thread status says it is writing"
    text = "Hello there.\n\nMore"
    step = next_step(view(text), no_native)
    assert (step.op, step.end) == ("post_open", text.index("More"))
    assert next_step(view(text, free=busy("start")), POLICY).op == "post_open"


def test_when_edits_are_scarce_the_first_paragraph_is_posted_whole():
    text = "Hello there, here is what changed this week.\n\nMore"
    step = next_step(view(text, free=busy("start", "edit")), POLICY)
    assert step.op == "post" and step.final and step.end == text.index("More")


def test_a_stream_grows_by_appends_at_most_once_a_second():
    seg = Segment("stream", "1.1", 0, 6, changed_at=NOW - 0.3, started_at=NOW - 5)
    assert next_step(view("Hello there. More words. ", segs=[seg]), POLICY).op == "wait"
    seg.changed_at = NOW - 1.5
    step = next_step(view("Hello there. More words. ", segs=[seg]), POLICY)
    assert (step.op, step.start, step.end) == ("append", 0, len("Hello there. More words. "))


def test_a_finished_answer_lands_through_the_open_segment_when_its_budget_is_free():
    seg = Segment("edit", "1.1", 0, 6, changed_at=NOW - 0.2)
    step = next_step(view("Hello there.", done=True, segs=[seg]), POLICY)
    assert (step.op, step.end, step.final) == ("edit", len("Hello there."), True)


def test_a_final_never_waits_behind_an_edit_queue():
    text = "Hello there.\n\nAnd the rest of it."
    seg = Segment("edit", "1.1", 0, text.index("And"), changed_at=NOW - 0.2)
    step = next_step(view(text, done=True, segs=[seg], free=busy("edit", "edit:final")), POLICY)
    assert step.op == "seal", "the message keeps what it shows"
    seg.open = False
    step = next_step(view(text, done=True, segs=[seg], free=busy("edit", "edit:final")), POLICY)
    assert (step.op, step.start, step.end) == ("post", seg.end, len(text)), "the rest is posted at once"


# --- issue 26: one message while Slack allows it; fuller continuations; invisible seams ----------------------
PARAS = "First paragraph here.\n\n" + "Second one, long enough to be a message of its own. " * 3 + "\n\nThird"


def test_a_message_with_room_waits_for_its_budget_instead_of_splitting():
    first = PARAS.index("Second")
    for kind, budget in (("edit", "edit"), ("stream", "append")):
        seg = Segment(kind, "1.1", 0, first, changed_at=NOW - 3, started_at=NOW - 10)
        step = next_step(view(PARAS, segs=[seg], free=busy(budget), last_visible=NOW - 3), POLICY)
        assert step.op == "wait" and step.until <= NOW + POLICY.stall_after, (kind, step)


def test_an_answer_still_for_stall_after_goes_on_in_a_new_message_of_whole_blocks():
    first, third = PARAS.index("Second"), PARAS.index("Third")
    seg = Segment("edit", "1.1", 0, first, changed_at=NOW - 5, started_at=NOW - 10)
    step = next_step(view(PARAS, segs=[seg], free=busy("edit"), last_visible=NOW - 5), POLICY)
    assert step.op == "seal"
    seg.open = False
    step = next_step(view(PARAS, segs=[seg], free=busy("edit"), last_visible=NOW - 5), POLICY)
    assert (step.op, step.start, step.end, step.final) == ("post", first, third, True), \
        "the paragraph whole, not the half-written third"


def test_a_message_shown_to_mid_paragraph_is_never_sealed_for_a_stall():
    text = "Hello there. Still the first paragraph.\n\n" + "More words. " * 20
    seg = Segment("stream", "1.1", 0, len("Hello there. "), changed_at=NOW - 30, started_at=NOW - 30)
    step = next_step(view(text, segs=[seg], free=busy("append"), last_visible=NOW - 30), POLICY)
    assert step.op == "wait", "a continuation would begin mid-paragraph: only growth will do"


def test_a_final_from_mid_paragraph_waits_its_turn_instead_of_posting_the_rest():
    text = "Hello there. And the rest of the paragraph."
    seg = Segment("stream", "1.1", 0, len("Hello there. "), changed_at=NOW - 0.2, started_at=NOW - 5)
    step = next_step(view(text, done=True, segs=[seg], free=busy("append", "append:final", until=NOW + 2)), POLICY)
    assert step.op == "wait" and step.until == NOW + 2
    step = next_step(view(text, done=True, segs=[seg], free=busy("append")), POLICY)
    assert (step.op, step.end, step.final) == ("append", len(text), True), "the last append may use the reserve"


def test_a_continuation_is_worth_a_message_or_waits_twice_as_long():
    v = view("x", last_visible=NOW - 1)
    assert continuation_due(v, POLICY, POLICY.continue_chars) == NOW - 1 + POLICY.stall_after
    assert continuation_due(v, POLICY, POLICY.continue_chars - 1) == NOW - 1 + 2 * POLICY.stall_after
    sealed = Segment("post", "1.1", 0, 13, open=False, final=True)
    text = "Hello there.\n\nA short one.\n\nHalf"
    free = busy("start", "edit")
    step = next_step(view(text, segs=[sealed], free=free, last_visible=NOW - 5), POLICY)
    assert step.op == "wait" and step.until == NOW - 5 + 2 * POLICY.stall_after
    step = next_step(view(text, segs=[sealed], free=free, last_visible=NOW - 9), POLICY)
    assert (step.op, step.start, step.end) == ("post", 13, text.index("Half"))


def test_a_long_paragraph_may_be_shown_to_a_sentence_end():
    text = "One sentence here. " * 8 + "half"  # no paragraph end, past a quarter of a message
    step = next_step(view(text, free=busy("start")), POLICY)
    assert step.op == "post_open" and text[:step.end].endswith(". ")


@pytest.mark.parametrize("text, starts", [
    ("Para one. Two.\n\nPara two.", ["Para two."]),
    ("Intro:\n- a\n- b\n\nAfter the list.", ["After the list."]),
    ("Loose:\n\n- a\n\n- b\n\nAfter.", ["- a", "After."]),  # not between two items of one list
    ("| x | y |\n|---|---|\n| 1 | 2 |\n\nAfter the table.", ["After the table."]),
    ("Text.\n\n```py\nx = 1\n\ny = 2\n```\n\nAfter the code.", ["```py", "After the code."]),
    ("Text.\n## Heading\nBody.", ["## Heading"]),
])
def test_blocks_begin_after_whole_paragraphs_lists_tables_and_code(text, starts):
    found = [text[i:i + len(s)] for i, s in ((i, s) for i in range(1, len(text)) for s in starts
                                               if text.startswith(s, i)) if starts_block(text, i)]
    assert found == starts
    assert block_end(text, 0, len(text)) == text.index(starts[-1])
    assert not any(starts_block(text, i) for i in range(1, len(text)) if text[i - 1] not in "\n")


def test_a_paragraph_ends_once_its_blank_line_comes_a_list_once_the_next_line_does():
    assert block_end("Para one.\n\n", 0, 11) == 11
    assert block_end("- a\n\n", 0, 5) == 0, "the list may go on"
    assert block_end("- a\n\nNext", 0, 9) == 5


def test_the_old_design_waits_for_the_edit_budget():
    edits_only = Policy(**{**POLICY.__dict__, "edits_only": True, "native": False})
    seg = Segment("edit", "1.1", 0, 6, changed_at=NOW - 0.2)
    step = next_step(view("Hello there. And the rest.", done=True, segs=[seg], free=busy("edit:final")), edits_only)
    assert step.op == "wait"


def test_no_segment_holds_more_than_the_limit():
    text = ("word " * 200).strip() + "."
    seg = Segment("edit", "1.1", 0, 300, changed_at=NOW - 2)
    step = next_step(view(text, segs=[seg]), POLICY)
    assert step.op == "edit" and step.final and step.end <= 401
    seg.end, seg.final = step.end, True
    assert next_step(view(text, segs=[seg]), POLICY).op == "seal"


def test_streams_are_closed_before_slack_expires_them():
    seg = Segment("stream", "1.1", 0, 13, changed_at=NOW - 2, started_at=NOW - 250)
    step = next_step(view("Hello there. More. ", segs=[seg]), POLICY)
    assert step.op == "stop"


def test_everything_shown_and_done_is_finished():
    seg = Segment("post", "1.1", 0, 12, open=False, final=True)
    assert next_step(view("Hello there.", done=True, segs=[seg]), POLICY).op == "finished"


def test_intermediate_text_is_cut_where_a_reader_would_pause():
    assert display_end("One. Two thr", 0, False) == len("One. ")
    assert display_end("line one\nline tw", 0, False) == len("line one\n")
    assert display_end("no boundary yet", 0, False) == 0, "a lone word is no first message"
    words = "first words without any sentence end yet"
    assert display_end(words, 0, False) == len(words) - len("yet")
    assert display_end(words, 0, False, sentences_only=True) == 0, "a continuation waits for a sentence"
    assert display_end("anything", 0, True) == len("anything")


def test_a_continuation_does_not_end_inside_a_code_block_it_opened():
    text = "Intro sentence here.\n\n```bash\npsql -c 'x'\n"
    assert display_end(text, 0, False, sentences_only=True) == text.index("```")
    assert display_end(text, 0, False) == len(text), "a growing message may show the open block"
    inside = text.index("psql")
    assert display_end(text, inside, False, sentences_only=True) == len(text), "a long block may be cut"


# --- issue 25: no answer floods a thread; no piece splits a token it could keep whole --------------------
FLOODS = {
    "backtick line": "Here you go:\n" + "`" * 9000,
    "backtick run": "Here you go: " + "`" * 9000,
    "endless fence": "Here you go:\n```\n" + "y" * 9000,
    "one word": "Here you go: " + "x" * 9000,
}


def _deliver(text: str, policy: Policy, piece: int) -> list[Segment]:
    """Carry out the planner's steps as Slack would accept them (every budget free), with Gemini's text
    arriving `piece` characters a second."""
    segs: list[Segment] = []
    now, fed = NOW, 0
    for _ in range(20_000):
        now += 1.0
        fed = min(len(text), fed + piece)
        step = next_step(View(text[:fed], fed == len(text), now, segs, {}, now), policy)
        if step.op == "finished":
            return segs
        if step.op in ("start", "post", "post_open"):
            kind = {"start": "stream", "post": "post", "post_open": "edit"}[step.op]
            segs.append(Segment(kind, str(len(segs)), step.start, step.end, open=step.op != "post",
                                final=step.op == "post", changed_at=now, started_at=now))
        elif step.op in ("append", "edit"):
            segs[-1].end, segs[-1].final, segs[-1].changed_at = step.end, step.final, now
        elif step.op in ("seal", "stop"):
            segs[-1].open = False
    raise AssertionError("the answer never finished")


@pytest.mark.parametrize("piece", [40, 100_000])  # trickled, and all at once
@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("shape", FLOODS)
def test_pathological_text_lands_in_full_messages(shape, native, piece):
    text = FLOODS[shape]
    policy = Policy(**{**POLICY.__dict__, "native": native})
    segs = _deliver(text, policy, piece)
    shown = [render_span(text, s.start, s.end, final=True) for s in segs]
    assert all(len(m) <= POLICY.limit for m in shown)
    assert all(len(m) >= POLICY.limit * 0.9 for m in shown[:-1]), [len(m) for m in shown][:6]
    assert len(segs) <= len(text) // int(POLICY.limit * 0.9) + 1


LINK = "<https://evil.example/" + "a" * 400 + "|Slack login page>"


def test_a_growing_message_holds_back_a_token_until_it_is_whole():
    text = "Sign in here: " + LINK[:350]
    assert display_end(text, 0, False) == text.index("<"), "however long the token already is"
    assert display_end(text + LINK[350:] + " more", 0, False) > len(text)


def test_a_full_message_steps_back_over_a_token_only_while_half_full():
    policy = Policy(**{**POLICY.__dict__, "native": False})
    short = "word " * 60 + "<https://x.example/" + "b" * 150 + "|label>"  # from 300 across the 400-char limit
    step = next_step(view(short + " tail " * 40, done=True), policy)
    assert step.end == short.index("<"), "the token goes whole into the next message"
    long = "word " * 10 + LINK + " tail " * 40  # the token begins in the first half: cut inside it
    step = next_step(view(long, done=True), policy)
    assert long.index("<") < step.end <= POLICY.limit


# issue 17.5: the crash journal spells its fields out, and still reads what older versions wrote
def test_a_segment_is_journalled_with_readable_keys():
    seg = Segment("edit", "1.5", 10, 42, open=False, final=True, has_button=True)
    assert seg.to_json() == {"kind": "edit", "ts": "1.5", "start": 10, "end": 42, "open": False, "final": True,
                             "button": True}
    back = Segment.from_json(seg.to_json())
    assert (back.kind, back.ts, back.start, back.end, back.open, back.final, back.has_button) == \
        ("edit", "1.5", 10, 42, False, True, True)


def test_a_journal_written_before_the_upgrade_still_recovers():
    old = Segment.from_json({"k": "stream", "ts": "1.5", "s": 0, "e": 12, "o": True, "f": False, "b": True})
    assert (old.kind, old.start, old.end, old.open, old.final, old.has_button) == ("stream", 0, 12, True, False, True)
    oldest = Segment.from_json({"k": "post", "ts": "1.6", "s": 12, "e": 30, "o": False})  # before f/b existed
    assert (oldest.final, oldest.has_button) == (False, False)
    assert Intent.from_json({"op": "post", "s": 12, "e": 30, "grows": True}) == Intent("post", 12, 30, True)
    intent = Intent("start", 0, 12)
    assert intent.to_json() == {"op": "start", "start": 0, "end": 12, "grows": False}
    assert Intent.from_json(intent.to_json()) == intent
