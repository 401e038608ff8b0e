"""Document text is untrusted: rendered markdown keeps no script, remote image or
javascript: link."""

from app.rendering import render_markdown


def test_raw_html_is_escaped_not_rendered():
    html = render_markdown("hello <script>alert(1)</script> <img src=x onerror=alert(1)>")
    assert "<script" not in html
    assert "<img" not in html
    assert "&lt;script&gt;" in html


def test_javascript_links_lose_their_href():
    html = render_markdown("[click](javascript:alert(1))")
    assert "javascript:" not in html.replace("[click](javascript:alert(1))", "")
    assert 'href="javascript' not in html


def test_remote_images_are_dropped():
    html = render_markdown("![pixel](https://tracker.example/p.png?d=secret)")
    assert "<img" not in html
    assert "tracker.example" not in html


def test_markdown_structure_survives():
    html = render_markdown(
        "# Title\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n[docs](https://example.com)"
    )
    assert "<h1>Title</h1>" in html
    assert "<table>" in html
    assert 'rel="noopener noreferrer nofollow"' in html


def test_leading_title_heading_is_not_repeated():
    from app.rendering import without_title_heading

    assert without_title_heading("# Travel Policy\n\nBody", "Travel Policy").strip() == "Body"
    assert without_title_heading("# Other\n\nBody", "Travel Policy").startswith("# Other")
    assert without_title_heading("Travel Policy\n\nBody", "Travel Policy").startswith("Travel")
