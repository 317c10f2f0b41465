"""The persona file: the default loads, and every mistake names its key."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

import pytest

from app.persona import PersonaError, load_persona
from fsm import Stage


def _default() -> str:
    return resources.files("app").joinpath("default_persona.toml").read_text()


def test_the_default_persona_loads_with_the_contract_thresholds() -> None:
    persona = load_persona()
    limits = persona.fsm_thresholds
    assert (limits.warming_at, limits.close_at, limits.negative_above, limits.recovered_positive_above) == (
        10,
        30,
        0.3,
        0.5,
    )
    assert limits.cooldown_after.days == 14
    assert "flirt" in persona.style(Stage.CLOSE).system and "flirt" in persona.style(Stage.REPAIR).system.lower()
    assert "Do not flirt" in persona.prompts.safety


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("temperature = 0.9\n", 'temperature = "hot"\n', "stages.close.temperature"),
        ("warming_at = 10\n", "", "thresholds.warming_at"),
        ("[prompts]\n", '[prompts]\nsumary = "typo"\n', "prompts.sumary"),
        ("top_p = 0.95\n", "top_p = 1.5\n", "stages.close.top_p"),
    ],
)
def test_a_bad_key_is_named(tmp_path: Path, old: str, new: str, key: str) -> None:
    path = tmp_path / "persona.toml"
    path.write_text(_default().replace(old, new, 1))
    with pytest.raises(PersonaError, match=key.replace(".", r"\.")):
        load_persona(path)


def test_not_toml_and_missing_files_say_so(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("name = ")
    with pytest.raises(PersonaError, match="not valid TOML"):
        load_persona(broken)
    with pytest.raises(PersonaError, match="cannot be read"):
        load_persona(tmp_path / "absent.toml")


def test_adapter_id_is_optional_and_passed_on(tmp_path: Path) -> None:
    data = tomllib.loads(_default())
    assert "adapter_id" not in data["stages"]["close"]
    path = tmp_path / "persona.toml"
    path.write_text(_default().replace("[stages.close]\n", '[stages.close]\nadapter_id = "flirty-lora"\n'))
    assert load_persona(path).style(Stage.CLOSE).params.adapter_id == "flirty-lora"
