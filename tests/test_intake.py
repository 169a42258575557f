"""Which events become turns (pure rules of chat/intake.py)."""

from __future__ import annotations

from slackbot.chat.intake import DM_THREAD, classify, installing_team

BOT = "UBOT"


def ev(**kw):
    base = {"type": "message", "user": "U1", "text": "hi", "channel": "C1", "ts": "2.0", "channel_type": "channel"}
    base.update(kw)
    return base


def test_mention_starts_a_thread_under_the_message():
    turn = classify(ev(type="app_mention", text="<@UBOT> hi"), BOT, "T1")
    assert turn.kind == "mention" and turn.reply_thread_ts == "2.0" and turn.chain_thread == "2.0"
    assert not turn.in_existing_thread


def test_mention_inside_a_thread_uses_that_thread():
    turn = classify(ev(type="app_mention", text="<@UBOT> sum up", thread_ts="1.0"), BOT, "T1")
    assert turn.chain_thread == "1.0" and turn.in_existing_thread


def test_thread_reply_is_a_candidate_turn_but_top_level_chatter_is_not():
    assert classify(ev(thread_ts="1.0"), BOT, "T1").kind == "reply"
    assert classify(ev(), BOT, "T1") is None
    assert classify(ev(thread_ts="2.0"), BOT, "T1") is None  # a thread parent


def test_message_copy_of_a_mention_is_left_to_app_mention():
    assert classify(ev(thread_ts="1.0", text="<@UBOT> hi"), BOT, "T1") is None


def test_dm_every_message_is_a_turn():
    top = classify(ev(channel="D1", channel_type="im"), BOT, "T1")
    assert top.kind == "dm" and top.reply_thread_ts is None and top.chain_thread == DM_THREAD
    threaded = classify(ev(channel="D1", channel_type="im", thread_ts="1.0"), BOT, "T1")
    assert threaded.chain_thread == "1.0" and threaded.reply_thread_ts == "1.0"


def test_bots_self_edits_and_deletes_are_ignored():
    assert classify(ev(bot_id="B1", channel_type="im"), BOT, "T1") is None
    assert classify(ev(user=BOT, channel_type="im"), BOT, "T1") is None
    for subtype in ("bot_message", "message_changed", "message_deleted", "channel_join"):
        assert classify(ev(subtype=subtype, channel_type="im"), BOT, "T1") is None
    assert classify(ev(subtype="file_share", channel_type="im"), BOT, "T1") is not None
    assert classify({"type": "message"}, BOT, "T1") is None
    assert classify("nonsense", BOT, "T1") is None


def test_one_message_is_one_turn_whatever_carries_it():
    a = classify(ev(type="app_mention", text="<@UBOT> x", thread_ts="1.0"), BOT, "T1")
    b = classify(ev(thread_ts="1.0", text="x"), BOT, "T1")
    assert a.id == b.id


def test_state_belongs_to_the_installing_workspace_not_the_sender():
    # 9.10 Slack Connect: a partner organisation's member carries their own `team`; the turn (its dedup
    # key, chain and edit budget) is keyed by the workspace the app is installed in.
    partner = ev(thread_ts="1.0", team="T_PARTNER", user_team="T_PARTNER")
    turn = classify(partner, BOT, "T_HOME")
    assert turn.team == "T_HOME" and turn.id == "T_HOME:C1:1.0:2.0"
    dm = classify(ev(channel="D1", channel_type="im", team="T_PARTNER"), BOT, "T_HOME")
    assert dm.team == "T_HOME"


def test_installing_team_reads_authorizations_first():
    body = {"team_id": "T_ENVELOPE", "authorizations": [{"team_id": "T_HOME", "is_bot": True}]}
    assert installing_team(body) == "T_HOME"
    assert installing_team({"team_id": "T_ENVELOPE", "authorizations": [{"team_id": None}]}) == "T_ENVELOPE"
    assert installing_team({"authorizations": []}, "T_CONTEXT") == "T_CONTEXT"
    assert installing_team({"authorizations": "nonsense"}) == ""


def test_role_says_whether_a_message_starts_the_bots_own_conversation():
    # issue 25.9: a mention at the root or a DM starts the bot's own thread; a mention inside people's
    # thread only asks it there; a reply is answered by the store's presence rules (store/turns.py)
    assert classify(ev(type="app_mention", text="<@UBOT> hi"), BOT, "T1").role == "start"
    assert classify(ev(channel="D1", channel_type="im"), BOT, "T1").role == "start"
    assert classify(ev(channel="D1", channel_type="im", thread_ts="1.0"), BOT, "T1").role == "start"
    assert classify(ev(type="app_mention", text="<@UBOT> hi", thread_ts="1.0"), BOT, "T1").role == "mention"
    assert classify(ev(thread_ts="1.0"), BOT, "T1").role == "reply"


def test_the_journal_record_is_built_from_the_message():
    reply = classify(ev(thread_ts="1.0", parent_user_id=BOT, files=[{"id": "F1"}]), BOT, "T1")
    record = reply.record(owner="r-1", bot_user_id=BOT, now=5.0)
    assert (record.id, record.kind, record.reply_thread_ts, record.chain_thread) == ("T1:C1:1.0:2.0", "reply", "1.0", "1.0")
    assert record.owned_by_parent and record.files == [{"id": "F1"}] and record.user_team == "T1"
    assert (record.owner, record.bot_user_id, record.created, record.state) == ("r-1", BOT, 5.0, "accepted")
    dm = classify(ev(channel="D1", channel_type="im"), BOT, "T1").record(owner="r-1", bot_user_id=None, now=5.0)
    assert dm.reply_thread_ts == "" and dm.chain_thread == DM_THREAD and not dm.owned_by_parent
