"""The training-time mitigations (token, mask, loss) on hand-made data and a tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from biasloop.config import MitigationConfig, TrainingConfig
from biasloop.errors import ConfigError, DataError
from biasloop.resources.cues import LexiconSources, Masker, detect_groups, load_lexicons
from biasloop.mitigate import (
    TrainingContext,
    mitigation_params,
    prepare_training_records,
    training_loss_term,
)
from biasloop.mitigate.training import alignment_loss
from biasloop.models.base import TrainExample

BUILTINS = ["gender_terms", "names", "culture_terms"]


def _masker(replacement="mask", lexicons=BUILTINS):
    return Masker(
        load_lexicons(lexicons, sources=LexiconSources()), replacement=replacement
    )


# --------------------------------------------------------------------------- mask


@pytest.mark.parametrize(
    ("text", "expected", "count"),
    [
        (
            "She told him that Fatima was a Chinese engineer.",
            "[MASK] told [MASK] that [MASK] was a [MASK] engineer.",
            4,
        ),
        # words that contain cues are left alone
        (
            "The manager thanked the shepherd; Themistocles and Hermione went to Chinatown.",
            "The manager thanked the shepherd; Themistocles and Hermione went to Chinatown.",
            0,
        ),
        ("Catarina's brother-in-law is Spanish.", "[MASK]'s [MASK]-in-law is [MASK].", 3),
        # names are case-sensitive: "rosa" is not the name Rosa
        ("Rosa wore a rosa scarf.", "[MASK] wore a rosa scarf.", 1),
        # multi-word terms across any spacing, longest first
        ("They moved to Saudi  Arabia.", "They moved to [MASK].", 1),
        ("HE SAID SHE WAS WOMAN OF THE YEAR", "[MASK] SAID [MASK] WAS [MASK] OF THE YEAR", 3),
    ],
)
def test_mask_replaces_whole_word_cues_only(text, expected, count):
    assert _masker().mask(text) == (expected, count)


def test_neutral_replacement_reads_as_text():
    masked, count = _masker("neutral").mask(
        "She said her brother is Spanish. He met Carmen in Madrid."
    )
    assert masked == "They said their sibling is. They met the person in the city."
    assert count == 7


def test_user_lexicons_from_json_and_text_files(tmp_path):
    as_json = tmp_path / "religion.json"
    as_json.write_text(json.dumps({"Muslim": "", "Christian": ""}))
    as_text = tmp_path / "age.txt"
    as_text.write_text("# age words\nelderly\tolder\nteenager\n")
    masker = Masker(
        load_lexicons([str(as_json), str(as_text)], sources=LexiconSources()),
        replacement="neutral",
    )
    assert masker.mask("A Muslim teenager helped an elderly man.") == (
        "A person helped an older man.",
        3,
    )


def test_unknown_lexicon_is_a_one_line_error(tmp_path):
    with pytest.raises(ConfigError, match=r"mitigation.params.mask.lexicons: 'slang' is neither a "
                       r"built-in lexicon \(culture_terms, gender_terms, names\)"):
        load_lexicons(["slang"], sources=LexiconSources())
    broken = tmp_path / "bad.json"
    broken.write_text('{"a": 1}')
    with pytest.raises(DataError, match="bad.json: a lexicon is a JSON object"):
        load_lexicons([str(broken)], sources=LexiconSources())


def test_detect_groups_counts_cues_per_axis():
    lexicons = load_lexicons(BUILTINS, sources=LexiconSources())
    found = detect_groups("She met Mei in Shanghai; he and his wife are Chinese.", lexicons)
    assert found["gender"] == {"female": 3, "male": 2}  # she, Mei, wife / he, his
    assert found["culture"]["chinese"] >= 3  # Mei (name), Shanghai, Chinese


def test_mask_mitigation_changes_augmented_records_only():
    records = [
        {"prompt": "About a nurse.", "response": "She is kind.", "source": "real"},
        {"prompt": "About a woman.", "response": "Fatima is kind.", "source": "synthetic"},
    ]
    config = MitigationConfig(name="mask")
    prepared = prepare_training_records(records, TrainingContext(config=config))
    assert prepared[0] == records[0]
    assert prepared[1]["prompt"] == "About a [MASK]."
    assert prepared[1]["response"] == "[MASK] is kind."
    assert prepared[1]["meta"]["mitigation"] == {"name": "mask", "masked": 2}
    only_response = MitigationConfig(name="mask", params={"mask": {"fields": ["response"]}})
    kept = prepare_training_records(records, TrainingContext(config=only_response))
    assert kept[1]["prompt"] == "About a woman."


# --------------------------------------------------------------------------- token


@pytest.mark.parametrize("position", ["prompt", "response"])
def test_token_tags_augmented_records_at_the_configured_position(position):
    records = [
        {"prompt": "P", "response": "R", "source": "real"},
        {"prompt": "P", "response": "R", "source": "synthetic"},
    ]
    config = MitigationConfig(name="token",
                              params={"token": {"tag": "<biased>", "position": position}})
    prepared = prepare_training_records(records, TrainingContext(config=config))
    assert prepared[0] == records[0]
    assert prepared[1][position] == f"<biased> {records[1][position]}"
    other = "response" if position == "prompt" else "prompt"
    assert prepared[1][other] == records[1][other]


def test_curation_mitigations_leave_training_records_alone():
    records = [{"prompt": "P", "response": "R", "source": "synthetic"}]
    for name in ("none", "reward_rejection", "loss"):
        context = TrainingContext(config=MitigationConfig(name=name))
        assert prepare_training_records(records, context) == records
    assert training_loss_term(MitigationConfig(name="none")) is None
    assert training_loss_term(MitigationConfig(name="loss")) is not None


# --------------------------------------------------------------------------- loss


def _batch(backend):
    examples = [
        TrainExample(prompt="Tell me about nurses.", response="Nurses care.", is_augmented=False),
        TrainExample(prompt="Who fixes cars?", response="A mechanic, usually.", is_augmented=True),
        TrainExample(prompt="Hi", response="Hello there, friend.", is_augmented=False),
        TrainExample(prompt="A story?", response="Once upon a time.", is_augmented=True),
    ]
    encoded = [backend._encode_example(ex, 64) for ex in examples]
    return backend._collate(examples, encoded)


def test_alignment_loss_equals_a_hand_computation(tiny_backend):
    batch = _batch(tiny_backend)
    with torch.no_grad():
        outputs = tiny_backend.model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            output_hidden_states=True,
        )
    term = float(alignment_loss(0.7)(outputs, batch))

    hidden = outputs.hidden_states[-1].double().numpy()
    mask = batch["attention_mask"].numpy()
    pooled = [hidden[i][mask[i] == 1].mean(axis=0) for i in range(len(mask))]
    original = np.mean([pooled[0], pooled[2]], axis=0)
    augmented = np.mean([pooled[1], pooled[3]], axis=0)
    expected = 0.7 * float(np.sum((original - augmented) ** 2))
    assert term == pytest.approx(expected, rel=1e-5)
    assert expected > 0

    only_original = {**batch, "is_augmented": torch.zeros(4, dtype=torch.bool)}
    assert float(alignment_loss(0.7)(outputs, only_original)) == 0.0


def _lora_grads(backend, extra_loss):
    config = TrainingConfig(method="lora")
    params = backend._prepare_training(config, seed=0)
    batch = _batch(backend)
    backend.model.zero_grad(set_to_none=True)
    backend.model.train()
    loss = backend._step_loss(batch, batch["weights"], extra_loss)
    loss.backward()
    backend.model.eval()
    return float(loss.detach()), torch.cat([p.grad.flatten().clone() for p in params])


def test_alignment_loss_adds_to_the_loss_and_changes_the_gradient(tiny_backend):
    torch.manual_seed(0)
    plain_loss, plain = _lora_grads(tiny_backend, None)
    torch.manual_seed(0)
    zero_loss, zero = _lora_grads(tiny_backend, alignment_loss(0.0))
    torch.manual_seed(0)
    aligned_loss, aligned = _lora_grads(tiny_backend, alignment_loss(5.0))
    assert zero_loss == pytest.approx(plain_loss)
    assert torch.allclose(zero, plain)
    assert aligned_loss > plain_loss
    assert (aligned - plain).norm() > 1e-3 * plain.norm()


def test_loss_mitigation_changes_real_training(tiny_backend):
    examples = [
        TrainExample(prompt=f"Q{i}", response=f"answer number {i}", is_augmented=i % 2 == 1)
        for i in range(8)
    ]
    config = TrainingConfig(method="lora", batch_size=4, epochs=1)
    plain = tiny_backend.train(examples, config=config, seed=3)
    tiny_backend.reset_to_base()
    aligned = tiny_backend.train(
        examples,
        config=config,
        seed=3,
        extra_loss=training_loss_term(MitigationConfig(name="loss", params={"loss": {"weight": 10.0}})),
    )
    assert len(aligned.step_losses) == len(plain.step_losses) == 2
    assert aligned.step_losses[0] > plain.step_losses[0]


# --------------------------------------------------------------------------- in the SCPL loop


def test_training_mitigations_apply_in_the_loop(tmp_path):
    from biasloop.config import load_config
    from biasloop.io import read_json, read_jsonl
    from biasloop.runner.experiment import start_run

    overrides = [
        "name=loop-token", "model.name=tiny-random", "task.name=preference",
        "task.eval_queries_per_group=2", "generation.max_new_tokens=6", "generation.batch_size=8",
        "training.batch_size=4", "loop.generations=1", "loop.queries_per_generation=8",
        "metrics.bootstrap_samples=0", "metrics.perplexity_texts=0", "run.progress=false",
        "mitigation.name=token", "mitigation.params.token.tag=<synthetic>",
    ]
    run = start_run(load_config(None, overrides), out=tmp_path / "token").root
    trained = read_jsonl(next(run.rglob("gen-000/train.jsonl")))
    synthetic = [r for r in trained if r["source"] == "synthetic"]
    assert synthetic and all(r["prompt"].startswith("<synthetic> ") for r in synthetic)
    assert all(not r["prompt"].startswith("<synthetic>") for r in trained if r["source"] != "synthetic")

    # The loss term pulls synthetic towards real data: with half of D_1 real it acts.
    mixed = [*overrides[:-2], "loop.synthetic_fraction=0.5"]
    loss = start_run(load_config(None, [*mixed, "mitigation.name=loss",
                                        "mitigation.params.loss.weight=10"]), out=tmp_path / "loss").root
    plain = start_run(load_config(None, mixed), out=tmp_path / "plain").root
    losses = [read_json(next(r.rglob("gen-000/train.json")))["step_losses"] for r in (loss, plain)]
    assert len(losses[0]) == len(losses[1]) > 0
    assert losses[0] != losses[1]


def test_each_mitigation_reads_its_own_params_so_conditions_can_switch():
    config = MitigationConfig(name="none", params={"token": {"tag": "<t>"}, "loss": {"weight": 2.0}})
    assert mitigation_params(config, "token").tag == "<t>"
    assert mitigation_params(config, "loss").weight == 2.0
    assert mitigation_params(config, "mask").fields == ["prompt", "response"]  # defaults


def test_the_old_option_keys_still_work_with_a_deprecation_warning():
    with pytest.warns(FutureWarning) as caught:
        config = MitigationConfig(name="token", token={"tag": "<t>"}, acceptance_rate=0.3)
    assert [str(w.message) for w in caught] == [
        "mitigation.token is deprecated and will be removed; use mitigation.params.token",
        "mitigation.acceptance_rate is deprecated and will be removed; use "
        "mitigation.params.random_rejection.acceptance_rate",
    ]
    assert config.params == {"token": {"tag": "<t>"}, "random_rejection": {"acceptance_rate": 0.3}}
    with pytest.warns(FutureWarning, match="mitigation.params.token.<option>"):
        flat = MitigationConfig(name="token", params={"tag": "<t>"})
    assert mitigation_params(flat).tag == "<t>"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["mitigation.params.loss.weight=-1"],
         r"mitigation\.params\.loss\.weight = -1: Input should be greater than or equal to 0"),
        (["mitigation.params.tokn.tag=x"],
         r"mitigation\.params\.tokn: unknown mitigation 'tokn' \(did you mean 'token'\?\)"),
        (["mitigation.params.mask.lexicons=[slang]"],
         r"mitigation\.params\.mask\.lexicons: 'slang' is neither a built-in lexicon"),
    ],
)
def test_bad_mitigation_params_fail_before_work_for_any_condition(overrides, expected):
    from biasloop.config import load_config
    from biasloop.runner.experiment import check_plugins

    # The run's own mitigation is `none`: options of another are checked all the same.
    config = load_config(None, ["model.name=tiny-random", *overrides])
    with pytest.raises(ConfigError, match=expected) as info:
        check_plugins(config)
    assert "\n" not in str(info.value)
