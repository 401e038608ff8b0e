"""Text out of uploaded files: the type is decided by content, never by the file name.

Supported: plain text, Markdown, HTML (text only; script/style dropped), PDF (pypdf).
Anything else, and encrypted, malformed or empty files, is rejected with a reason that is
safe to show; nothing is half-extracted.

Two stages. `precheck` is cheap (size, emptiness, name, the first bytes) and runs where the
file is received, so an obviously wrong upload gets its answer at once and nothing is
stored. `extract_text` parses (PDF structure, UTF-8, HTML) and runs only in the ingestion
worker: the web process never parses an untrusted document, and a parse failure is
recorded on the ingestion job.
"""

from __future__ import annotations

import html
import io
import re
from pathlib import Path

import nh3

from retrieval.errors import IngestionRejected

TEXT_SUFFIXES = {".txt", ".text", ".md", ".markdown", ".html", ".htm", ".pdf"}
_HTML_HEAD = re.compile(rb"^\s*(<!doctype html|<html|<head|<body|<!--)", re.IGNORECASE)
_BLANK_RUNS = re.compile(r"\n\s*\n\s*\n+")


def sniff(data: bytes) -> str:
    """'pdf', 'html' or 'text' from the bytes themselves; IngestionRejected otherwise."""
    if data.startswith(b"%PDF-"):
        return "pdf"
    if b"\x00" in data[:8192]:
        raise IngestionRejected("binary content that is not a supported document type")
    if _HTML_HEAD.match(data[:1024]):
        return "html"
    return "text"


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise IngestionRejected("not valid UTF-8 text") from None


def _html_text(source: str) -> str:
    text = nh3.clean(
        source,
        tags=set(),
        clean_content_tags={"script", "style", "noscript", "template", "head"},
    )
    return _BLANK_RUNS.sub("\n\n", html.unescape(text))


def _pdf_text(data: bytes) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            raise IngestionRejected("encrypted PDF: upload an unencrypted copy")
        pages = [page.extract_text() or "" for page in reader.pages]
    except IngestionRejected:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError):
        raise IngestionRejected("malformed PDF") from None
    return "\n\n".join(p.strip() for p in pages if p.strip())


def precheck(*, name: str, data: bytes, max_bytes: int) -> str:
    """The document's kind ('pdf', 'html', 'text') from cheap checks that need no parsing.
    Raises IngestionRejected with the reason."""
    if len(data) > max_bytes:
        raise IngestionRejected(f"larger than the {max_bytes // (1024 * 1024)} MB limit")
    if not data.strip():
        raise IngestionRejected("empty document")
    if Path(name).suffix.lower() not in TEXT_SUFFIXES:
        raise IngestionRejected(f"unsupported file type {Path(name).suffix or '(none)'}")
    kind = sniff(data)
    if (Path(name).suffix.lower() == ".pdf") != (kind == "pdf"):
        raise IngestionRejected(f"content ({kind}) does not match the file name")
    return kind


def extract_text(*, name: str, data: bytes, max_bytes: int) -> str:
    """The document's text. Raises IngestionRejected with the reason."""
    kind = precheck(name=name, data=data, max_bytes=max_bytes)
    if kind == "pdf":
        text = _pdf_text(data)
    elif kind == "html":
        text = _html_text(_decode(data))
    else:
        text = _decode(data)
    if not text.strip():
        raise IngestionRejected("no extractable text (a scanned PDF needs OCR first)")
    return text
