"""Sentiment as two scores in [0, 1], and a crisis detector that overrides them."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Sentiment:
    negative: float
    positive: float


class SentimentScorer(Protocol):
    async def score(self, text: str) -> Sentiment: ...


class VaderScorer:
    """The VADER lexicon, offline and fast; its compound score split into two sides."""

    def __init__(self) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self._analyzer = SentimentIntensityAnalyzer()

    async def score(self, text: str) -> Sentiment:
        compound = float(self._analyzer.polarity_scores(text[:5000])["compound"])
        return Sentiment(negative=max(0.0, -compound), positive=max(0.0, compound))


NEGATIVE_LABELS = frozenset(
    {
        "negative",
        "neg",
        "anger",
        "angry",
        "annoyance",
        "disgust",
        "fear",
        "sadness",
        "sad",
        "grief",
        "remorse",
        "disappointment",
        "nervousness",
        "embarrassment",
    }
)
POSITIVE_LABELS = frozenset(
    {
        "positive",
        "pos",
        "joy",
        "love",
        "optimism",
        "admiration",
        "amusement",
        "approval",
        "gratitude",
        "excitement",
        "relief",
        "caring",
        "pride",
    }
)


def map_labels(scores: list[dict[str, Any]]) -> Sentiment:
    """Sum the probabilities of negative and positive labels; neutral ones (surprise) count for neither."""
    negative = sum(float(s["score"]) for s in scores if str(s["label"]).lower() in NEGATIVE_LABELS)
    positive = sum(float(s["score"]) for s in scores if str(s["label"]).lower() in POSITIVE_LABELS)
    return Sentiment(negative=min(1.0, negative), positive=min(1.0, positive))


class ClassifierScorer:
    """A `transformers` text-classification model (`SENTIMENT_MODEL`), run off the event loop."""

    def __init__(self, pipeline: Any) -> None:
        self._pipeline = pipeline

    @classmethod
    async def load(cls, model: str) -> ClassifierScorer:
        def _load() -> Any:
            from transformers import pipeline

            return pipeline("text-classification", model=model, top_k=None)

        try:
            loaded = await asyncio.to_thread(_load)
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"SENTIMENT_MODEL={model!r} could not be loaded ({exc}); point it at a local folder"
            ) from exc
        labels = sorted(loaded.model.config.id2label.values())
        log.info("sentiment_model_loaded", model=model, labels=labels)
        return cls(loaded)

    async def score(self, text: str) -> Sentiment:
        result = await asyncio.to_thread(self._pipeline, text[:2000], truncation=True)
        scores = result[0] if result and isinstance(result[0], list) else result
        return map_labels(scores)


_CRISIS = re.compile(
    r"\b("
    r"(kill|hurt|harm|cut|hang|shoot|drown|poison)(ing)?\s+my\s?sel(f|ves)"
    r"|suicid\w*"
    r"|end(ing)?\s+(it\s+all|my\s+life|things)"
    r"|take\s+my\s+(own\s+)?life"
    r"|(want|wanna|going|plan(ning)?)\s+(to\s+)?die"
    r"|better\s+off\s+dead"
    r"|no\s+(reason|point)\s+(to|in)\s+(live|living|go(ing)?\s+on)"
    r"|don'?t\s+want\s+to\s+(live|be\s+alive|exist|wake\s+up)"
    r"|self[-\s]?harm\w*"
    r"|overdos\w*"
    r")\b",
    re.IGNORECASE,
)


def detect_crisis(text: str) -> bool:
    """Signs of self-harm or suicide; when in doubt, err towards care."""
    return _CRISIS.search(text) is not None
