"""The transformers paths: a sentiment classifier and the in-process chat backend, built locally."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm.local import TransformersChatModel
from llm.sentiment import ClassifierScorer, map_labels
from llm.types import ChatMessage, GenerationParams
from tests.tiny_models import build_chat_lm, build_emotion_classifier


@pytest.mark.parametrize(
    ("scores", "negative", "positive"),
    [
        (
            [{"label": "sadness", "score": 0.7}, {"label": "joy", "score": 0.2}, {"label": "surprise", "score": 0.1}],
            0.7,
            0.2,
        ),
        (
            [{"label": "anger", "score": 0.2}, {"label": "fear", "score": 0.2}, {"label": "disgust", "score": 0.1}],
            0.5,
            0.0,
        ),
        ([{"label": "POSITIVE", "score": 0.9}, {"label": "NEGATIVE", "score": 0.1}], 0.1, 0.9),
        ([{"label": "surprise", "score": 1.0}], 0.0, 0.0),
    ],
)
def test_classifier_labels_map_to_two_scores(scores: list[dict[str, object]], negative: float, positive: float) -> None:
    result = map_labels(scores)
    assert (round(result.negative, 6), round(result.positive, 6)) == (negative, positive)


async def test_a_sad_leaning_classifier_scores_negative(tmp_path: Path) -> None:
    scorer = await ClassifierScorer.load(str(build_emotion_classifier(tmp_path / "sad", leaning="sadness")))
    sentiment = await scorer.score("i went to the market")
    assert sentiment.negative > 0.9 and sentiment.positive < 0.1


async def test_a_joy_leaning_classifier_scores_positive(tmp_path: Path) -> None:
    scorer = await ClassifierScorer.load(str(build_emotion_classifier(tmp_path / "joy", leaning="joy")))
    sentiment = await scorer.score("hello how are you")
    assert sentiment.positive > 0.9 and sentiment.negative < 0.1


async def test_a_missing_classifier_says_which_setting(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="SENTIMENT_MODEL"):
        await ClassifierScorer.load(str(tmp_path / "nothing-here"))


async def test_local_backend_generates_and_streams_within_its_window(tmp_path: Path) -> None:
    model = await TransformersChatModel.load(str(build_chat_lm(tmp_path / "lm")))
    limits = await model.limits()
    assert (limits.max_input_tokens, limits.max_total_tokens) == (511, 512)
    prompt = [ChatMessage("system", "you are a friend"), ChatMessage("user", "hello how are you")]
    greedy = GenerationParams(max_new_tokens=8, temperature=0.0)
    completion = await model.complete(prompt, greedy)
    assert completion.prompt_tokens == await model.count_tokens(prompt)
    assert completion.max_new_tokens == 8
    streamed = "".join([piece async for piece in model.stream(prompt, greedy)])
    assert " ".join(streamed.split()) == " ".join(completion.text.split()), "stream and completion agree"


async def test_local_backend_never_exceeds_its_window(tmp_path: Path) -> None:
    from llm.errors import PromptTooLongError

    model = await TransformersChatModel.load(str(build_chat_lm(tmp_path / "lm")))
    huge = [ChatMessage("user", "hello " * 600)]
    with pytest.raises(PromptTooLongError):
        await model.complete(huge, GenerationParams(max_new_tokens=8))
