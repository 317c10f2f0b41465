"""Tiny transformers models built on the spot (no download), saved and loaded the real way."""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "i am so sad and angry today",
    "i feel great and happy",
    "hello how are you my friend",
    "the weather is nice",
    "tell me about your day",
    "i went to the market",
]
EMOTIONS = {0: "anger", 1: "disgust", 2: "fear", 3: "joy", 4: "sadness", 5: "surprise"}
CHAT_TEMPLATE = (
    "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}[assistant] {% endif %}"
)


def _tokenizer(extra_words: list[str] | None = None):  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = ["[UNK]", "[PAD]", "[CLS]", "[SEP]", "<|end|>"]
    tokenizer.train_from_iterator(CORPUS + (extra_words or []), trainers.WordLevelTrainer(special_tokens=specials))
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        eos_token="<|end|>",
    )


def build_emotion_classifier(folder: Path, *, leaning: str = "sadness") -> Path:
    """A one-layer BERT whose head always leans towards `leaning`."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    tokenizer = _tokenizer()
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        num_labels=len(EMOTIONS),
        id2label=EMOTIONS,
        label2id={v: k for k, v in EMOTIONS.items()},
    )
    model = BertForSequenceClassification(config)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
        model.classifier.bias[config.label2id[leaning]] = 6.0
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_chat_lm(folder: Path) -> Path:
    """A one-layer GPT-2 with random weights and a chat template: real generation, nonsense words."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = _tokenizer(["[system]", "[user]", "[assistant]"])
    tokenizer.chat_template = CHAT_TEMPLATE
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=512,
        n_embd=16,
        n_layer=1,
        n_head=2,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
