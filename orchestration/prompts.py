"""Versioned prompt templates (langchain-core), stored as files next to this module.

Version 2 adds a per-turn canary token (a system-prompt leak detector: if it ever appears
in an answer, the answer is blocked) and spotlighting: the retrieved passages are wrapped
in delimiters carrying a per-turn random marker, with an instruction that they are data.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from string import Template

from langchain_core.prompts import PromptTemplate as LcPromptTemplate

from broker.types import ContextChunk

PROMPT_DIR = Path(__file__).parent / "prompts"
ANSWER_TEMPLATE_ID = "answer"
ANSWER_TEMPLATE_VERSION = 2


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
    """Version 1 (no canary, no spotlight); kept so v1 stays renderable."""
    passages = "\n\n".join(f"[{c.marker}] ({c.title})\n{c.text}" for c in context) or "(none)"
    return template.body.substitute(context=passages)


@dataclass(frozen=True, slots=True)
class VersionedPrompt:
    template_id: str
    version: int
    prompt: LcPromptTemplate

    @property
    def ref(self) -> str:
        return f"{self.template_id}@v{self.version}"


@lru_cache(maxsize=8)
def load_prompt(template_id: str, version: int) -> VersionedPrompt:
    body = (PROMPT_DIR / f"{template_id}-v{version}.txt").read_text()
    return VersionedPrompt(template_id, version, LcPromptTemplate.from_template(body))


def new_token(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(8)}"


def spotlight(text: str, marker: str) -> str:
    """A passage can never close the data block: the marker is random per turn, and any
    delimiter-looking text in the passage is defused anyway."""
    return text.replace(marker, "[marker removed]").replace("<</", "< </").replace("<<", "< <")


def render_answer_prompt(
    prompt: VersionedPrompt, context: tuple[ContextChunk, ...], *, canary: str, marker: str
) -> str:
    passages = (
        "\n\n".join(
            f"[{c.marker}] ({spotlight(c.title, marker)})\n{spotlight(c.text, marker)}"
            for c in context
        )
        or "(none)"
    )
    return prompt.prompt.format(context=passages, canary=canary, spotlight=marker)
