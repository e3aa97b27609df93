"""The tests of `hybridbatch/models/packed.py`."""

import pytest
import torch
from conftest import TINY_MODEL
from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaModel

from hybridbatch.models.encoders import Encoder, save_encoder
from hybridbatch.models.packed import packable
from hybridbatch.models.packed_encoder import PackedEncoder, load_encoder

TEXTS = ["de", "Deutsch (Schweiz)", "简体中文", "русский язык (Россия)", "a much longer text " * 8, "x"]


@pytest.fixture(scope="module")
def xlmr_dir(tiny_model_dir, tmp_path_factory):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
    )
    out = tmp_path_factory.mktemp("xlmr")
    save_encoder(XLMRobertaModel(config, add_pooling_layer=False), tokenizer, {**TINY_MODEL, "pooling": "cls"}, out)
    return out


def encoder_pair(model_dir, params):
    packed, padded = Encoder(model_dir, params, "cpu"), Encoder(model_dir, params, "cpu", packed=False)
    assert packed.packed and not padded.packed
    return packed, padded


@pytest.mark.parametrize("model", ["bert-mean", "bert-cls", "xlm-roberta-cls"])
def test_packed_embeddings_and_gradients_equal_the_padded_forward(model, tiny_model_dir, xlmr_dir):
    model_dir = xlmr_dir if model.startswith("xlm") else tiny_model_dir
    packed, padded = encoder_pair(model_dir, TINY_MODEL)
    for encoder in (packed, padded):
        encoder.model[1].pooling_mode = model.rsplit("-", 1)[1]
        encoder.model.eval()  # dropout off: the two paths then compute the same function
    assert packed.transformer.config.model_type == model.rsplit("-", 1)[0]
    direction = torch.randn(packed.model.get_embedding_dimension(), generator=torch.Generator().manual_seed(1))
    gradients = []
    for encoder in (packed, padded):
        embeddings = encoder.embed(TEXTS, "passage")
        (embeddings @ direction).pow(2).sum().backward()
        gradients.append({name: p.grad for name, p in encoder.model.named_parameters() if p.grad is not None})
    torch.testing.assert_close(packed.embed(TEXTS, "query"), padded.embed(TEXTS, "query"), atol=1e-5, rtol=1e-5)
    assert gradients[0].keys() == gradients[1].keys() and len(gradients[0]) > 10
    for name, gradient in gradients[0].items():
        torch.testing.assert_close(gradient, gradients[1][name], atol=1e-5, rtol=1e-4, msg=name)


def test_only_transformer_then_mean_or_cls_pooling_is_packable(tiny_model_dir):
    model = Encoder(tiny_model_dir, TINY_MODEL, "cpu").model
    assert packable(model)
    model[1].pooling_mode = "max"
    assert not packable(model)
    model[1].pooling_mode = "mean"
    model[1].include_prompt = False  # prompt tokens left out of the mean: not what the packed path pools
    assert not packable(model)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_packed_forward_on_cuda_equals_the_padded_forward(tiny_model_dir, dtype):
    """On the GPU, in fp32 and under bf16 autocast (as the trainer runs it)."""
    packed, padded = (Encoder(tiny_model_dir, TINY_MODEL, "cuda", packed=flag) for flag in (True, False))
    for encoder in (packed, padded):
        encoder.model.eval()
    with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
        embeddings = [encoder.embed(TEXTS, "passage").float() for encoder in (packed, padded)]
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(embeddings[0], embeddings[1], atol=tolerance, rtol=tolerance)


@pytest.mark.parametrize("model", ["bert-mean", "xlm-roberta-cls"])
def test_the_plain_torch_encoder_is_the_sentence_transformers_model_bit_for_bit(model, tiny_model_dir, xlmr_dir):
    model_dir = xlmr_dir if model.startswith("xlm") else tiny_model_dir
    texts = TEXTS + ["  spaced  out ", "", "\u00a0non-breaking", "tab\tand\nnewline", "ǅemal " * 30]
    params = {**TINY_MODEL, "max_length": 12}  # some texts truncated
    reference, ours = Encoder(model_dir, params, "cpu"), load_encoder(model_dir, params, "cpu")
    assert isinstance(ours, PackedEncoder) and ours.pooling == model.rsplit("-", 1)[1]
    features = reference.features(texts, "query")
    mask = features["attention_mask"].bool()
    mine = ours.features(texts, "query")
    assert torch.equal(mine["attention_mask"].bool(), mask)
    assert torch.equal(mine["input_ids"][mask], features["input_ids"][mask])
    assert (ours.token_counts(texts, "passage") == reference.token_counts(texts, "passage")).all()
    names = [name for name, _ in ours.model.named_parameters()]
    assert [name for name, _ in reference.transformer.named_parameters() if name in names] == names  # same order
    for mode in ("eval", "train"):  # train: dropout drawn in the same order
        for module in (reference.model, ours.model):
            getattr(module, mode)()
            module.zero_grad()
        embeddings = []
        for encoder in (reference, ours):
            torch.manual_seed(3)
            embeddings.append(encoder.embed(texts, "passage"))
            embeddings[-1].pow(3).sum().backward()
        assert torch.equal(embeddings[0], embeddings[1]), mode
        theirs = dict(reference.transformer.named_parameters())
        for name, parameter in ours.model.named_parameters():
            assert torch.equal(parameter.grad, theirs[name].grad), (mode, name)
    ours.model.eval()
    reference.model.eval()
    np_ours, np_reference = ours.encode(texts, "query", 4), reference.encode(texts, "query", 4)
    assert (np_ours == np_reference).all()
