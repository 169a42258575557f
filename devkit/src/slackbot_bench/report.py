"""The benchmark's table: one run's figures as rows, or two strategies side by side. Pure."""

from __future__ import annotations

from .analysis import compare_rows, fmt, render_table

Row = tuple[str, str, "float | None"]  # label, value as shown, the number a ratio compares


def _pcts(s: dict) -> str:
    return f"{fmt(s.get('p50'))} / {fmt(s.get('p95'))}  (max {fmt(s.get('max'))})"


def table_rows(f: dict) -> list[Row]:
    """One run's rows. The number beside each is what `--strategy both` divides (p95 for timings)."""
    A, B = f["ack_ms"]["A"], f["ack_ms"]["B"]
    ans = f["answers"]
    mix = f["delivery_mix"]
    bot_cpu = f["bot_cpu_s"]
    msgs = f.get("messages_per_answer", {})
    share = msgs.get("one_message_share")
    rows: list[Row] = [
        ("conversations (phase A)", f"{f['conversations']}", None),
        ("replicas", f"{f['replicas']}", None),
        ("answers expected (A + B)", f"{ans['phase_a']} + {ans['phase_b']}", None),
        ("phase A / B duration (s)",
         f"{fmt(f['durations_s']['phase_a'], 1)} / {fmt(f['durations_s']['phase_b'], 1)}", f["durations_s"]["phase_a"]),
        ("ack p50 / p99 (ms), A burst", f"{fmt(A['p50_ms'], 1)} / {fmt(A['p99_ms'], 1)}  "
                                        f"(n={A['n']}, non-200={A['non_200']}, >3s={A['over_3s']})", A["p99_ms"]),
        ("ack p50 / p99 (ms), B sustained", f"{fmt(B['p50_ms'], 1)} / {fmt(B['p99_ms'], 1)}  "
                                            f"(n={B['n']} at {fmt(f['intake']['achieved_rate'], 1)}/s, "
                                            f"non-200={B['non_200']}, >3s={B['over_3s']})", B["p99_ms"]),
        ("bench loop max stall A / B (ms)", f"{fmt(f['bench_loop_max_stall_ms'].get('A'), 1)} / "
                                            f"{fmt(f['bench_loop_max_stall_ms'].get('B'), 1)}", None),
        ("mention -> sign of life p50 / p95 (s)", _pcts(f["sign_of_life_s"]), f["sign_of_life_s"]["p95"]),
        ("first token -> first visible p50 / p95 (s)", _pcts(f["first_text_s"]), f["first_text_s"]["p95"]),
        ("Gemini done -> final text p50 / p95 (s)", _pcts(f["gemini_done_to_final_s"]),
         f["gemini_done_to_final_s"]["p95"]),
        ("longest stall while Gemini writes p50 / p95 (s)", _pcts(f["longest_stall_s"]), f["longest_stall_s"]["p95"]),
        ("answers by native stream / edits / posts only", f"{mix['native']} / {mix['edits']} / {mix['posts']}", None),
        ("answers that showed the placeholder first", f"{ans['placeholder_first']} of {ans['expected']}",
         ans["placeholder_first"]),
        ("visible updates per answer mean / max", f"{fmt(f['visible_updates_per_answer']['mean'])} / "
                                                  f"{fmt(f['visible_updates_per_answer']['max'])}",
         f["visible_updates_per_answer"]["mean"]),
        ("messages per answer mean / p95 / max", f"{fmt(msgs.get('mean'))} / {fmt(msgs.get('p95'))} / "
                                                 f"{fmt(msgs.get('max'))}", msgs.get("mean")),
        ("answers in one message", f"{fmt(share * 100 if share is not None else None, 0, ' %')}", share),
        ("characters per message p50", f"{fmt(msgs.get('chars_p50'), 0)}", msgs.get("chars_p50")),
        ("edits per answer mean / max", f"{fmt(f['edits_per_answer']['mean'])} / {fmt(f['edits_per_answer']['max'])}",
         f["edits_per_answer"]["mean"]),
        ("Slack 429s, all methods", f"{f['slack_429']['total']}", f["slack_429"]["total"]),
    ]
    per = max(1, ans["expected"])
    rows += [(f"Slack {method} calls / 429s (per answer)", f"{c['calls']} / {c['429']}  ({fmt(c['calls'] / per)})",
              c["calls"]) for method, c in f["slack_methods"].items()]
    rows += [
        ("failed / incomplete answers", f"{ans['failed']} / {ans['incomplete']}", None),
        ("final text != Gemini's", f"{ans['wrong_text']}", None),
        ("duplicate / spurious answers", f"{ans['duplicates']} / {ans['spurious_creates'] + ans['spurious_posts']}",
         None),
        ("bot CPU s per answer (A+B)", f"{fmt(bot_cpu['per_answer'], 3)}  (phase A alone "
                                       f"{fmt(bot_cpu['per_answer_phase_a'], 3)} s/answer; phase B "
                                       f"{fmt(bot_cpu['per_1000_deliveries_phase_b'])} s/1000 deliveries; "
                                       f"total {fmt(bot_cpu['total'])} s)", bot_cpu["per_answer"]),
        ("peak RSS per replica (MB)", ", ".join(fmt(x, 1) for x in f["peak_rss_mb"]),
         max(f["peak_rss_mb"]) if f["peak_rss_mb"] else None),
        ("Redis keys without TTL", f"{f['redis_keys']['no_ttl']}  (of {f['redis_keys']['total']} under the prefix)",
         None),
        ("Redis", _redis_kind(f["redis_keys"]), None),
        ("Redis commands per answer (server-wide)", f"{fmt(f['redis_commands']['per_answer'])}  "
                                                    f"({f['redis_commands']['total']} in phases A + B)",
         f["redis_commands"]["per_answer"]),
        ("share of keys per master", _key_shares(f["redis_keys"]), None),
        ("Redis memory left under the prefix per answer (KB)",
         f"{fmt(f['redis_keys']['bytes'] / 1024 / ans['expected'], 1)}  ({f['redis_keys']['total']} keys in all)"
         if ans["expected"] else "-", None),
    ]
    return rows


def _redis_kind(keys: dict) -> str:
    return f"cluster, {len(keys['per_node'])} masters" if keys.get("cluster") else "single node"


def _key_shares(keys: dict) -> str:
    per_node = keys.get("per_node") or {}
    total = sum(per_node.values())
    if not total:
        return "-"
    return " / ".join(f"{100 * n / total:.0f} %" for _, n in sorted(per_node.items()))


def table(f: dict) -> str:
    return render_table(("figure", "value"), [(label, shown) for label, shown, _ in table_rows(f)])


def comparison(a: dict, b: dict) -> str:
    """Two strategies' runs in one table, with a / b of each headline number."""
    header = ("figure", a["strategy"], b["strategy"], f"{a['strategy']} / {b['strategy']}")
    return render_table(header, compare_rows(table_rows(a), table_rows(b)))
