"""Survey questions: their types, how a definition is checked, and how an answer to each
is validated. A published version stores the questions exactly as checked here, so an
answer is always read against the wording that was asked."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import crmkit
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from crmkit_surveys.settings import KEY_PATTERN


class QuestionType(enum.StrEnum):
    NPS = "nps"
    CSAT = "csat"
    CES = "ces"
    SERVQUAL = "servqual"
    SINGLE_CHOICE = "single_choice"
    MULTIPLE_CHOICE = "multiple_choice"
    TEXT = "text"


class Dimension(enum.StrEnum):
    RELIABILITY = "reliability"
    RESPONSIVENESS = "responsiveness"
    ASSURANCE = "assurance"
    EMPATHY = "empathy"
    TANGIBLES = "tangibles"


class Facet(enum.StrEnum):
    """A SERVQUAL item asks what the customer expects or what they perceived."""

    EXPECTATION = "expectation"
    PERCEPTION = "perception"


SCALES: dict[QuestionType, tuple[int, int]] = {
    QuestionType.NPS: (0, 10),
    QuestionType.CSAT: (1, 5),
    QuestionType.CES: (1, 7),
    QuestionType.SERVQUAL: (1, 7),
}
"""The inclusive range of each scored question type."""

MAX_TEXT = 2000
Texts = dict[str, str]
"""A wording in each of the survey's locales: ``{"en": "...", "de": "..."}``."""


class Option(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(pattern=KEY_PATTERN)
    text: Texts


class Question(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=False)

    key: str = Field(pattern=KEY_PATTERN)
    type: QuestionType
    text: Texts
    required: bool = True
    options: list[Option] = Field(default_factory=list)
    dimension: Dimension | None = None
    facet: Facet | None = None

    @model_validator(mode="after")
    def _fits_its_type(self) -> Question:
        choice = self.type in (QuestionType.SINGLE_CHOICE, QuestionType.MULTIPLE_CHOICE)
        if choice and len(self.options) < 2:
            raise ValueError(f"question {self.key!r} needs at least two options")
        if not choice and self.options:
            raise ValueError(f"question {self.key!r} is not a choice: it takes no options")
        if len({option.key for option in self.options}) != len(self.options):
            raise ValueError(f"question {self.key!r} has two options with the same key")
        servqual = self.type is QuestionType.SERVQUAL
        if servqual != (self.dimension is not None) or servqual != (self.facet is not None):
            raise ValueError(
                f"question {self.key!r}: a dimension and a facet go with SERVQUAL items only"
            )
        return self


class Definition(BaseModel):
    """What a version freezes: its title, locales and questions."""

    model_config = ConfigDict(extra="forbid")

    title: Texts
    locales: list[str] = Field(min_length=1, max_length=20)
    questions: list[Question] = Field(min_length=1, max_length=100)

    @model_validator(mode="after")
    def _every_locale_worded(self) -> Definition:
        if len(set(self.locales)) != len(self.locales):
            raise ValueError("locales must be unique")
        keys = [question.key for question in self.questions]
        if len(set(keys)) != len(keys):
            raise ValueError("question keys must be unique")
        wordings: list[tuple[str, Texts]] = [("the title", self.title)]
        for question in self.questions:
            wordings.append((f"question {question.key!r}", question.text))
            wordings += [(f"option {o.key!r}", o.text) for o in question.options]
        for where, texts in wordings:
            missing = [locale for locale in self.locales if not texts.get(locale, "").strip()]
            if missing:
                raise ValueError(f"{where} has no wording in {', '.join(missing)}")
            if any(len(text) > MAX_TEXT for text in texts.values()):
                raise ValueError(f"{where} is longer than {MAX_TEXT} characters")
        return self


def check_definition(value: dict[str, Any]) -> Definition:
    """A definition, or BAD_USER_INPUT naming the first problem a person can fix."""
    try:
        return Definition.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise crmkit.BadUserInput(
            f"{where}: {message}" if where else message, field="questions"
        ) from None


@dataclass(frozen=True)
class Answer:
    """One validated answer, ready to store."""

    question: Question
    score: int | None = None
    choices: tuple[str, ...] = ()
    text: str | None = None


def _score(question: Question, raw: Any) -> int:
    low, high = SCALES[question.type]
    if isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
        raw = int(raw.strip())
    if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
        raise crmkit.BadUserInput(
            f"{question.key}: give a whole number from {low} to {high}",
            field=question.key,
            reason="range",
        )
    return raw


def check_answers(definition: Definition, raw: dict[str, Any]) -> list[Answer]:
    """Every answer checked against its question; BAD_USER_INPUT for the first that is
    out of range, not an option, too long, missing while required, or not asked."""
    asked = {question.key for question in definition.questions}
    unknown = sorted(set(raw) - asked)
    if unknown:
        raise crmkit.BadUserInput(
            f"{unknown[0]}: this survey asks no such question", field=unknown[0], reason="unknown"
        )
    answers: list[Answer] = []
    for question in definition.questions:
        value = raw.get(question.key)
        if value in (None, "", []):
            if question.required:
                raise crmkit.BadUserInput(
                    f"{question.key}: an answer is required", field=question.key, reason="required"
                )
            continue
        if question.type in SCALES:
            answers.append(Answer(question, score=_score(question, value)))
        elif question.type is QuestionType.TEXT:
            if not isinstance(value, str) or len(value) > MAX_TEXT:
                raise crmkit.BadUserInput(
                    f"{question.key}: give a text of at most {MAX_TEXT} characters",
                    field=question.key,
                    reason="text",
                )
            answers.append(Answer(question, text=value.strip()))
        else:
            chosen = [value] if isinstance(value, str) else value
            options = {option.key for option in question.options}
            single = question.type is QuestionType.SINGLE_CHOICE
            if (
                not isinstance(chosen, list)
                or not all(isinstance(c, str) and c in options for c in chosen)
                or len(set(chosen)) != len(chosen)
                or (single and len(chosen) != 1)
            ):
                what = "one of" if single else "any of"
                raise crmkit.BadUserInput(
                    f"{question.key}: choose {what} {', '.join(sorted(options))}",
                    field=question.key,
                    reason="choice",
                )
            answers.append(Answer(question, choices=tuple(chosen)))
    return answers
