"""Unit tests of profiles.py: channel lookup and MCP server headers (pure, no I/O but a temp file)."""

from __future__ import annotations

from slackbot.profiles import load_profiles, parse_mcp_servers


def test_channel_lookup_id_then_name_then_default(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("profiles:\n  a: {model: m-a}\n  b: {model: m-b}\n  c: {}\n"
                    "channels:\n  C0AAA: a\n  '#Help-Desk': b\ndefault: c\n")
    profiles = load_profiles(str(path))
    assert profiles.for_channel("C0AAA", "help-desk").name == "a"  # the id wins over the name
    assert profiles.for_channel("C0BBB", "help-desk").name == "b"  # names: "#" and case do not matter
    assert profiles.for_channel("C0CCC", "random").name == "c"
    assert profiles.needs_names
    path.write_text("profiles:\n  a: {}\nchannels:\n  C0AAA: a\n")
    only_ids = load_profiles(str(path))
    assert only_ids.for_channel("C0ZZZ") is None and not only_ids.needs_names


def test_mcp_header_values_come_from_the_environment_and_stay_out_of_reprs(monkeypatch):
    monkeypatch.setenv("T_ONE", "first-secret")
    monkeypatch.setenv("T_TWO", "second-secret")
    [server] = parse_mcp_servers('[{"name": "s", "url": "https://s.example/mcp", "headers": '
                                 '{"A": "env:T_ONE", "B": "${T_TWO}", "C": "plain"}}]')
    assert server.tool()["headers"] == {"A": "first-secret", "B": "second-secret", "C": "plain"}
    assert "secret" not in repr(server) and "plain" not in str(server) and "T_ONE" not in repr(server)
    monkeypatch.setenv("T_ONE", "rotated")
    assert server.tool()["headers"]["A"] == "rotated"  # read when the turn is sent: rotation needs no restart
