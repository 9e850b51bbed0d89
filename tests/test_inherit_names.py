"""Packaged first names by gender and culture, and their augmentation/evaluation split."""

from __future__ import annotations

import json

import pytest

from biasloop.errors import DataError
from biasloop.resources.names import CULTURES, GENDERS, NAMES_PER_CELL, load_names, split_names


def test_packaged_table_has_every_gender_and_culture_cell_full():
    table = load_names()
    assert set(table.genders) == set(GENDERS)
    assert set(table.cultures) == set(CULTURES)
    for gender in GENDERS:
        for culture in CULTURES:
            names = table.names(gender=gender, culture=culture)
            assert len(names) == NAMES_PER_CELL
            assert len(set(names)) == len(names)


@pytest.mark.parametrize(
    ("name", "gender", "culture"),
    [
        ("Fatima", "female", "arabic"),
        ("Ahmed", "male", "arabic"),
        ("Tingting", "female", "chinese"),
        ("Qiang", "male", "chinese"),
        ("Joana", "female", "portuguese"),
        ("João", "male", "portuguese"),
        ("Carmen", "female", "spanish"),
        ("Alejandro", "male", "spanish"),
    ],
)
def test_well_known_names_carry_their_gender_and_culture(name, gender, culture):
    person = load_names().lookup(name)
    assert person is not None and (person.gender, person.culture) == (gender, culture)


def test_no_name_is_in_two_cells():
    people = load_names().people
    assert len({p.name for p in people}) == len(people)


def test_split_is_disjoint_covers_the_table_and_keeps_every_cell_on_both_sides():
    table = load_names()
    augment, evaluate = split_names(table, eval_fraction=0.5, split_seed=0)
    assert not set(augment.names()) & set(evaluate.names())
    assert set(augment.names()) | set(evaluate.names()) == set(table.names())
    for gender in GENDERS:
        for culture in CULTURES:
            assert len(evaluate.names(gender=gender, culture=culture)) == NAMES_PER_CELL // 2
            assert augment.names(gender=gender, culture=culture)


def test_split_is_fixed_by_its_seed():
    table = load_names()
    first = split_names(table, eval_fraction=0.3, split_seed=7)[1].names()
    again = split_names(table, eval_fraction=0.3, split_seed=7)[1].names()
    other = split_names(table, eval_fraction=0.3, split_seed=8)[1].names()
    assert first == again and first != other


def test_user_name_files_load_from_json_and_csv(tmp_path):
    json_file = tmp_path / "names.json"
    json_file.write_text(
        json.dumps(
            {"cultures": {"dutch": {"female": ["Anouk", "Sanne"], "male": ["Daan", "Bram"]}}}
        )
    )
    table = load_names(str(json_file))
    assert table.names(gender="male", culture="dutch") == ["Daan", "Bram"]
    csv_file = tmp_path / "names.csv"
    csv_file.write_text("name,gender,culture\nAnouk,female,dutch\nDaan,male,dutch\n")
    assert load_names(str(csv_file)).lookup("Anouk").culture == "dutch"


def test_bad_name_files_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"cultures": {"dutch": {"female": "Anouk"}}}))
    with pytest.raises(DataError, match=r"cultures\.dutch\.female must be a list") as err:
        load_names(str(bad))
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="no such file"):
        load_names(str(tmp_path / "missing.json"))
