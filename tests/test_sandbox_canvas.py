"""The sandbox's canvas view (canvas_view.py, pure): a report's Markdown drawn readably, and safely."""

from __future__ import annotations

from slackbot_sandbox.canvas_view import inline, page, render

REPORT = """# Research: EU AI Act

## Executive summary

This report **examines** the topic [1] with `code` and a [source](https://example.org/survey).

- Finding 1.1: the trend is consistent.
  - a detail, indented
1. first step
2. second step

| Source | Scope |
|---|:---:|
| Primary survey | global |

```python
best = max(scores, key=scores.get)
```

> a quoted line
---
"""


def test_a_report_reads_as_headings_lists_tables_and_code():
    html = render(REPORT)
    assert "<h1>Research: EU AI Act</h1>" in html and "<h2>Executive summary</h2>" in html
    assert "<strong>examines</strong>" in html and "<code>code</code>" in html
    assert '<a href="https://example.org/survey" rel="noopener noreferrer">source</a>' in html
    assert "<li>Finding 1.1: the trend is consistent.</li>" in html
    assert '<li class="depth-1">a detail, indented</li>' in html
    assert "<ol><li>first step</li><li>second step</li></ol>" in html
    assert "<thead><tr><th>Source</th><th>Scope</th></tr></thead>" in html
    assert "<td>Primary survey</td><td>global</td>" in html
    assert "<pre><code>best = max(scores, key=scores.get)</code></pre>" in html
    assert "<blockquote>a quoted line</blockquote>" in html and "<hr>" in html
    assert "<title>Research: EU AI Act · canvas</title>" in page(REPORT)


def test_everything_in_a_canvas_is_text_never_markup():
    hostile = ('# <script>alert(1)</script>\n\n<img src=x onerror=alert(1)> and "quotes" & \'ticks\'\n\n'
               "[click](javascript:alert(1)) [x](https://ok.example/\"onmouseover=x)\n\n"
               "| <b>cell</b> | x |\n|---|---|\n| <i>y</i> | z |\n\n```\n</code></pre><script>x()</script>\n```\n"
               "`<svg onload=alert(1)>` **<u>bold</u>**")
    html = page(hostile)
    body = html.split("<article", 1)[1]
    for tag in ("<script", "<img", "<b>", "<i>", "<svg", "<u>"):
        assert tag not in body, tag
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body and "&lt;img src=x onerror=alert(1)&gt;" in body
    assert 'href="javascript' not in body and "[click](javascript:alert(1))" in body
    assert '<a href="https://ok.example/&quot;onmouseover=x" rel="noopener noreferrer">x</a>' in body
    assert "&quot;quotes&quot; &amp; &#x27;ticks&#x27;" in body
    assert "<title>&lt;script&gt;alert(1)&lt;/script&gt; · canvas</title>" in html
    assert "<strong>&lt;u&gt;bold&lt;/u&gt;</strong>" in body


def test_unpaired_markers_and_huge_lines_stay_plain_text():
    assert inline("a ** b") == "a ** b" and inline("**a** **b") == "<strong>a</strong> **b"
    assert inline("[not a link](ftp://x)") == "[not a link](ftp://x)"
    line = "[" * 50_000 + "](" * 50_000 + "`" + "-" * 50_000
    assert render(line).startswith("<p>[[[")  # bounded patterns: no blow-up on crafted text
    assert render("-" * 100_000 + "x") .startswith("<p>---")


def test_emphasis_but_not_inside_words():
    assert inline("_(Figure 1 is attached.)_ and *this*") == "<em>(Figure 1 is attached.)</em> and <em>this</em>"
    assert inline("snake_case_name and 2*3*4") == "snake_case_name and 2*3*4"
    assert inline("**bold _and em_**") == "<strong>bold <em>and em</em></strong>"
