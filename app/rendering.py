"""Markdown to safe HTML: raw HTML disabled at parse time, then an allow-list sanitiser."""

from __future__ import annotations

import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

_ALLOWED_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "code", "pre",
    "blockquote", "ul", "ol", "li", "table", "thead", "tbody", "tr", "th", "td", "a",
}  # fmt: skip
_ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "th": {"style"}, "td": {"style"}}
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


def without_title_heading(text: str, title: str) -> str:
    """Drop a leading `# <title>` line: the page shows the title already."""
    first, _, rest = text.lstrip().partition("\n")
    if first.lstrip("#").strip() == title.strip() and first.startswith("#"):
        return rest
    return text


def render_markdown(text: str) -> SafeString:
    """Render untrusted markdown; nothing executable or remote survives."""
    html = _markdown.render(text)
    cleaned = nh3.clean(
        html,
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        url_schemes={"https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        filter_style_properties={"text-align"},
    )
    return mark_safe(cleaned)  # noqa: S308 - sanitised by nh3 just above
