"""The persona file: the character's prompts, generation settings and FSM thresholds."""

from __future__ import annotations

import tomllib
from datetime import timedelta
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fsm import Stage, Thresholds
from llm.types import GenerationParams

DEFAULT_PERSONA = "default_persona.toml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StageStyle(_Strict):
    system: str = Field(min_length=1)
    temperature: float = Field(ge=0.0, le=2.0)
    top_p: float = Field(gt=0.0, le=1.0)
    max_new_tokens: int = Field(ge=1, le=8192)
    repetition_penalty: float = Field(ge=0.5, le=3.0)
    adapter_id: str | None = None

    @property
    def params(self) -> GenerationParams:
        return GenerationParams(
            temperature=self.temperature,
            top_p=self.top_p,
            max_new_tokens=self.max_new_tokens,
            repetition_penalty=self.repetition_penalty,
            adapter_id=self.adapter_id,
        )


class Stages(_Strict):
    icebreaker: StageStyle
    warming: StageStyle
    close: StageStyle
    repair: StageStyle


class Prompts(_Strict):
    checkin: str = Field(min_length=1)
    summary: str = Field(min_length=1)
    daily: str = Field(min_length=1)
    safety: str = Field(min_length=1)
    memory_heading: str = Field(min_length=1)
    recall_heading: str = Field(
        default="(Things the user told you before that may matter now; bring them up only if they fit.)",
        min_length=1,
    )
    followup: str = Field(
        default='Earlier the user told you: "{what}" That was {when}. Write one short, warm message asking '
        "how it went. Ask one question, put no pressure on them, and do not say that you were reminded.",
        min_length=1,
    )


class Notices(_Strict):
    """What the friend says, once, when it will not answer now (ACCESS_MODE and the limits).
    `{until}` is the time the user can talk again, in their zone (HH:MM, or a weekday and HH:MM)."""

    allowlist: str = Field(
        default="Hi! I'm only talking with a small group of people for now, and you're not on my list yet. "
        "I've kept your message; if the people who run me add you, I'll answer it right away.",
        min_length=1,
    )
    invite: str = Field(
        default="Hi! I'm only talking with people who have an invite link for now. If you have one, open it "
        "(or send /start followed by the code) and I'll answer what you wrote.",
        min_length=1,
    )
    approval: str = Field(
        default="Hi! Nice to meet you. I've asked the people who run me to let you in; it usually doesn't take "
        "long. I've kept your message and I'll answer as soon as they say yes.",
        min_length=1,
    )
    refused: str = Field(
        default="I'm sorry, I can't talk with you here. Take care of yourself.",
        min_length=1,
    )
    replies: str = Field(
        default="You're writing faster than I can keep up with! Give me a moment to catch my breath; "
        "I'll answer everything together at {until}.",
        min_length=1,
    )
    tokens: str = Field(
        default="We've talked a lot today and I've used up my words for now. I've kept what you wrote and "
        "I'll answer it when my new day starts ({until}).",
        min_length=1,
    )
    newcomers: str = Field(
        default="Lots of people are saying hi right now! I'll be with you in a moment; I've kept your message.",
        min_length=1,
    )
    reminder_set: str = Field(default="Okay, I'll remind you {when}: {what}.", min_length=1)
    reminder: str = Field(default="⏰ You asked me to remind you: {what}", min_length=1)


class ThresholdTable(_Strict):
    warming_at: int = Field(ge=1)
    close_at: int = Field(ge=1)
    negative_above: float = Field(ge=0.0, le=1.0)
    recovered_positive_above: float = Field(ge=0.0, le=1.0)
    recovered_calm_messages: int = Field(ge=1)
    cooldown_after_days: float = Field(gt=0)


class Persona(_Strict):
    name: str = Field(min_length=1)
    fallback: str = Field(min_length=1)
    greeting: str = Field(min_length=1)
    thresholds: ThresholdTable
    prompts: Prompts
    stages: Stages
    notices: Notices = Notices()

    def style(self, stage: Stage) -> StageStyle:
        return getattr(self.stages, stage.value)  # type: ignore[no-any-return]

    @property
    def fsm_thresholds(self) -> Thresholds:
        t = self.thresholds
        return Thresholds(
            warming_at=t.warming_at,
            close_at=t.close_at,
            negative_above=t.negative_above,
            recovered_positive_above=t.recovered_positive_above,
            recovered_calm_messages=t.recovered_calm_messages,
            cooldown_after=timedelta(days=t.cooldown_after_days),
        )


class PersonaError(Exception):
    """The persona file is missing, not TOML, or has a bad or missing key."""


def load_persona(path: Path | None = None) -> Persona:
    """Read and validate the persona; errors name the file and the key."""
    where = str(path) if path else f"the packaged {DEFAULT_PERSONA}"
    try:
        raw = path.read_bytes() if path else resources.files("app").joinpath(DEFAULT_PERSONA).read_bytes()
        data = tomllib.loads(raw.decode("utf-8"))
    except OSError as exc:
        raise PersonaError(f"PERSONA_FILE {where} cannot be read ({exc.strerror}); fix the path") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PersonaError(f"PERSONA_FILE {where} is not valid TOML: {exc}") from None
    try:
        persona = Persona.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        message = "is missing" if first["type"] == "missing" else first["msg"].lower()
        if first["type"] == "extra_forbidden":
            message = "is not a persona key (check the spelling)"
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise PersonaError(f"PERSONA_FILE {where}: key '{key}' {message}{more}") from None
    if persona.thresholds.close_at <= persona.thresholds.warming_at:
        raise PersonaError(f"PERSONA_FILE {where}: key 'thresholds.close_at' must be above warming_at")
    return persona
