"""Packed (unpadded) forward pass for BERT-family sentence encoders.

A padded batch spends most of its time multiplying padding: short texts (questions,
captions, names) pad to the longest in the batch. Here every linear layer, LayerNorm and
activation runs on the real tokens only, packed into one (tokens x hidden) matrix; only
attention sees the padded (batch x heads x length x dim) layout. The result equals the
padded model's sentence embedding (tests: to 1e-5, gradients included); dropout sits where
transformers puts it, so training is the same model, not a different one."""

from __future__ import annotations

import torch
import torch.nn.functional as F

PACKABLE_MODEL_TYPES = {"bert": False, "roberta": True, "xlm-roberta": True}  # -> positions offset by padding_idx
POOLING_MODES = {"mean", "cls"}


def packable(model) -> bool:
    """Whether a SentenceTransformer is transformer -> mean/cls pooling (-> Normalize) over
    a BERT-family encoder with absolute positions, the case `packed_sentence_embeddings` covers."""
    modules = list(model)
    if len(modules) not in (2, 3) or not hasattr(modules[0], "auto_model"):
        return False
    pooling = modules[1]
    if getattr(pooling, "pooling_mode", None) not in POOLING_MODES or not getattr(pooling, "include_prompt", False):
        return False
    if len(modules) == 3 and type(modules[2]).__name__ != "Normalize":
        return False
    config = modules[0].auto_model.config
    return (
        config.model_type in PACKABLE_MODEL_TYPES
        and getattr(config, "position_embedding_type", "absolute") in (None, "absolute")
        and not config.is_decoder
    )


def packed_sentence_embeddings(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
) -> torch.Tensor:
    """Sentence embeddings (pooled, not normalised) of a padded batch, computed packed."""
    encoder = model[0].auto_model
    lengths = attention_mask.bool().sum(1)
    hidden = packed_input_states(encoder, input_ids, attention_mask, token_type_ids)
    hidden = packed_layers(encoder, hidden, lengths, 0)
    return packed_pooling(model[1].pooling_mode, hidden, lengths)


def packed_input_states(
    encoder, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
) -> torch.Tensor:
    """The embedding layer's output for the real tokens of a padded batch, packed: text
    after text, each in its order (tokens x hidden)."""
    mask = attention_mask.bool()
    batch, length = mask.shape
    index = mask.flatten().nonzero().squeeze(1)
    embeddings = encoder.embeddings
    if PACKABLE_MODEL_TYPES[encoder.config.model_type]:  # as transformers: counted over the non-pad tokens
        positions = input_ids.ne(embeddings.padding_idx).long().cumsum(1) + embeddings.padding_idx
    else:
        positions = torch.arange(length, device=mask.device).expand(batch, length)
    types = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
    hidden = (
        embeddings.word_embeddings(input_ids.flatten()[index])
        + embeddings.token_type_embeddings(types.flatten()[index])
        + embeddings.position_embeddings(positions.flatten()[index])
    )
    return embeddings.dropout(embeddings.LayerNorm(hidden))


def packed_layers(encoder, hidden: torch.Tensor, lengths: torch.Tensor, first: int, last: int | None = None):
    """Transformer layers `first` to `last` (exclusive; None: the top) over packed states
    of texts with `lengths` tokens. Attention dropout follows each layer's mode."""
    config = encoder.config
    batch, length = len(lengths), int(lengths.max()) if len(lengths) else 0
    mask = torch.arange(length, device=hidden.device) < lengths[:, None]
    index = mask.flatten().nonzero().squeeze(1)
    heads = config.num_attention_heads
    head_dim = config.hidden_size // heads
    attention_mask_4d = mask[:, None, None, :]

    def padded_heads(states: torch.Tensor) -> torch.Tensor:
        full = states.new_zeros(batch * length, states.shape[1]).index_copy(0, index, states)
        return full.view(batch, length, heads, head_dim).transpose(1, 2)

    for layer in encoder.encoder.layer[first:last]:
        attention = layer.attention
        dropout = config.attention_probs_dropout_prob if attention.training else 0.0
        q, k, v = (
            padded_heads(linear(hidden)) for linear in (attention.self.query, attention.self.key, attention.self.value)
        )
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask_4d, dropout_p=dropout)
        context = context.transpose(1, 2).reshape(batch * length, config.hidden_size).index_select(0, index)
        hidden = attention.output.LayerNorm(attention.output.dropout(attention.output.dense(context)) + hidden)
        hidden = layer.output.LayerNorm(layer.output.dropout(layer.output.dense(layer.intermediate(hidden))) + hidden)
    return hidden


def packed_pooling(mode: str, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each text's CLS state or mean over its tokens (summed in fp32, as sentence-transformers)."""
    starts = lengths.cumsum(0) - lengths
    if mode == "cls":
        return hidden[starts]
    sequence = torch.repeat_interleave(torch.arange(len(lengths), device=hidden.device), lengths)
    summed = hidden.new_zeros(len(lengths), hidden.shape[1], dtype=torch.float32).index_add(0, sequence, hidden.float())
    return (summed / lengths.clamp(min=1).unsqueeze(1)).to(hidden.dtype)
