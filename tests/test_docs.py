"""The generated reference docs match the code."""

from __future__ import annotations

from pathlib import Path

from biasloop.config.reference import markdown_reference

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_configuration_reference_is_up_to_date():
    expected = markdown_reference()
    actual = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert actual == expected, "regenerate with: biasloop config reference > docs/configuration.md"


def test_every_config_field_has_a_row_in_the_reference():
    from biasloop.config import ExperimentConfig

    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    for section, field in ExperimentConfig.model_fields.items():
        annotation = field.annotation
        names = getattr(annotation, "model_fields", None)
        for name in names or [None]:
            key = f"`{section}.{name}`" if name else f"`{section}`"
            assert key in text
