"""Versioned prompt templates, stored as files next to this module."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from string import Template

from broker.types import ContextChunk

PROMPT_DIR = Path(__file__).parent / "prompts"
ANSWER_TEMPLATE_ID = "answer"
ANSWER_TEMPLATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class PromptTemplate:
    template_id: str
    version: int
    body: Template


@lru_cache(maxsize=8)
def load_template(template_id: str, version: int) -> PromptTemplate:
    body = (PROMPT_DIR / f"{template_id}-v{version}.txt").read_text()
    return PromptTemplate(template_id, version, Template(body))


def render_system_prompt(template: PromptTemplate, context: tuple[ContextChunk, ...]) -> str:
    passages = "\n\n".join(f"[{c.marker}] ({c.title})\n{c.text}" for c in context) or "(none)"
    return template.body.substitute(context=passages)
