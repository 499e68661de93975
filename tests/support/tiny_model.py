"""Builds, in about a second, a tiny Qwen2 causal LM (the architecture of DeepSeek-R1-Distill-Qwen)
with a locally trained byte-level BPE tokenizer and DeepSeek-R1's special tokens and chat template,
so that tests can run real vLLM without downloading anything.

Two variants:
- "random": random weights; greedy output is arbitrary but never ends (end-of-sentence is
  suppressed), so max_tokens always decides where it stops.
- "scripted": whatever the prompt, greedy decoding emits SCRIPTED_REASONING, `</think>`,
  SCRIPTED_ANSWER, then end-of-sentence. Attention and MLP outputs are zero, so the logits depend
  only on the current token (a bigram model), and each token of the script points to the next.

Only numpy, safetensors and tokenizers are used, so the model is built inside the test process.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Literal

import numpy as np
from safetensors.numpy import save_file
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

Variant = Literal["random", "scripted"]

ENDOFTEXT = "<|endoftext|>"  # transformers' Qwen2Tokenizer adds it when missing; here it is built in
BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
PAD = "<｜▁pad▁｜>"
USER = "<｜User｜>"
ASSISTANT = "<｜Assistant｜>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"

# Every token of the script must be distinct, or the bigram chain would loop: hence no word repeats,
# the reasoning ends without the full stop the answer uses, and no number (digits are single tokens).
SCRIPTED_REASONING = "Okay, the question asks about launch dates; source one gives that"
SCRIPTED_ANSWER = "The mission lifted off in July [1]."

QWEN2_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
# Room for Enclave's real prompt (its system rules and one short source take ~460 tokens with this
# small vocabulary); a prompt over it is refused before the model runs, so the limit test stays cheap.
CONTEXT_LENGTH = 2048
HIDDEN, HEADS, HEAD_DIM, LAYERS, INTERMEDIATE = 64, 2, 32, 2, 128

# A DeepSeek-R1-style template: system text first, user and assistant turns with the fullwidth
# markers, earlier answers without their reasoning, and a generation prompt that opens `<think>\n`.
CHAT_TEMPLATE = (
    "{% if add_generation_prompt is not defined %}{% set add_generation_prompt = false %}{% endif %}"
    "{% set ns = namespace(system='') %}"
    "{% for message in messages %}{% if message['role'] == 'system' %}"
    "{% set ns.system = ns.system + message['content'] %}{% endif %}{% endfor %}"
    "{{ bos_token }}{{ ns.system }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '<｜User｜>' + message['content'] }}"
    "{% elif message['role'] == 'assistant' %}{% set content = message['content'] %}"
    "{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}"
    "{{ '<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<｜Assistant｜><think>\\n' }}{% endif %}"
)

_CORPUS = """\
Enclave answers questions from an organisation's own documents and cites its sources.
The assistant retrieves passages, writes an answer, and records everything in an audit log.
Employees may ask about travel, leave, security, expenses, hiring and the handbook.
The model runs on local hardware; nothing leaves the building, and nothing is downloaded.
Reasoning comes first, between think tags, and the answer follows with citations like [1] or [2].
Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 2024. Months: January, February, March, July, August.
"""


def _train_tokenizer() -> Tokenizer:
    # Exactly the pipeline of transformers' Qwen2Tokenizer, which transformers 5 rebuilds around the
    # vocabulary for any qwen2 model: the file and the class then agree token for token.
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024,
        min_frequency=2,
        special_tokens=[ENDOFTEXT, BOS, EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    script = f"{SCRIPTED_REASONING}\n{SCRIPTED_ANSWER}\n"
    tok.train_from_iterator([_CORPUS] * 4 + [script] * 8, trainer=trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in (USER, ASSISTANT)])
    # As in DeepSeek-R1, the think tags are added but not special: they stay in decoded text,
    # which vLLM's deepseek_r1 reasoning parser relies on.
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in (THINK_OPEN, THINK_CLOSE)])
    return tok


def _script_chain(tok: Tokenizer) -> list[int]:
    """Token ids in the order the scripted model emits them, starting from the prompt's last."""
    prompt_end = tok.encode(f"{ASSISTANT}{THINK_OPEN}\n", add_special_tokens=False).ids[-1]
    chain = [
        prompt_end,
        *tok.encode(SCRIPTED_REASONING, add_special_tokens=False).ids,
        tok.token_to_id(THINK_CLOSE),
        *tok.encode(SCRIPTED_ANSWER, add_special_tokens=False).ids,
        tok.token_to_id(EOS),
    ]
    if len(set(chain)) != len(chain):
        raise ValueError(f"the scripted text repeats a token, so greedy decoding would loop: {chain}")
    if len(chain) > HIDDEN:
        raise ValueError(f"the script has {len(chain)} tokens; at most {HIDDEN} fit the hidden size")
    return chain


def _weights(variant: Variant, vocab: int, chain: list[int], banned: list[int]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)

    def rand(*shape: int, std: float = 0.02) -> np.ndarray:
        return rng.normal(0.0, std, shape).astype(np.float32)

    w: dict[str, np.ndarray] = {}
    embed = rand(vocab, HIDDEN, std=1.0)
    lm_head = rand(vocab, HIDDEN, std=1.0)
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        for name, out in (("q", HEADS * HEAD_DIM), ("k", HEADS * HEAD_DIM), ("v", HEADS * HEAD_DIM)):
            w[p + f"self_attn.{name}_proj.weight"] = rand(out, HIDDEN)
            w[p + f"self_attn.{name}_proj.bias"] = rand(out)
        w[p + "self_attn.o_proj.weight"] = rand(HIDDEN, HEADS * HEAD_DIM)
        w[p + "mlp.gate_proj.weight"] = rand(INTERMEDIATE, HIDDEN)
        w[p + "mlp.up_proj.weight"] = rand(INTERMEDIATE, HIDDEN)
        w[p + "mlp.down_proj.weight"] = rand(HIDDEN, INTERMEDIATE)
        w[p + "input_layernorm.weight"] = np.ones(HIDDEN, np.float32)
        w[p + "post_attention_layernorm.weight"] = np.ones(HIDDEN, np.float32)
        if variant == "scripted":
            # The residual stream stays the current token's embedding: a bigram model.
            w[p + "self_attn.o_proj.weight"][:] = 0
            w[p + "mlp.down_proj.weight"][:] = 0
        else:
            # Dimension 0 of the residual stream stays the embedding's constant 1 (see below).
            w[p + "self_attn.o_proj.weight"][0] = 0
            w[p + "mlp.down_proj.weight"][0] = 0
    if variant == "scripted":
        # Token i of the script is the unit vector e_i; after the final RMSNorm it is ~8 e_i, so
        # the next token's logit is ~80 and every other logit is 0.
        lm_head[:] = 0
        for i, (current, following) in enumerate(itertools.pairwise(chain)):
            embed[current] = 0
            embed[current, i] = 1
            lm_head[following, i] = 10
    else:
        # Every token carries +1 in dimension 0, which only the banned tokens' rows read, strongly
        # negative: the random model never stops on its own, nor emits a marker or a padding id.
        embed[:, 0] = 1
        lm_head[:, 0] = 0
        lm_head[banned, 0] = -100
    w["model.embed_tokens.weight"] = embed
    w["model.norm.weight"] = np.ones(HIDDEN, np.float32)
    w["lm_head.weight"] = lm_head
    return w


def build_tiny_model(folder: Path, variant: Variant) -> Path:
    """Write the model, its tokenizer and configs into `folder` (created) and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    tok = _train_tokenizer()
    chain = _script_chain(tok)
    bos, eos, pad = (tok.token_to_id(t) for t in (BOS, EOS, PAD))
    vocab = -(-tok.get_vocab_size() // 64) * 64  # padded like real checkpoints; extra rows unused

    tok.save(str(folder / "tokenizer.json"))
    added = {
        str(tok.token_to_id(t)): {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": t not in (THINK_OPEN, THINK_CLOSE),
        }
        for t in (ENDOFTEXT, BOS, EOS, PAD, USER, ASSISTANT, THINK_OPEN, THINK_CLOSE)
    }
    tokenizer_config = {
        "tokenizer_class": "Qwen2Tokenizer",
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "unk_token": None,
        "add_bos_token": False,  # the chat template writes it
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": CONTEXT_LENGTH,
        "added_tokens_decoder": added,
        "chat_template": CHAT_TEMPLATE,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2, ensure_ascii=False))
    (folder / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": BOS, "eos_token": EOS, "pad_token": PAD}, indent=2, ensure_ascii=False)
    )

    config = {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": HEADS,
        "head_dim": HEAD_DIM,
        "hidden_act": "silu",
        "max_position_embeddings": CONTEXT_LENGTH,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
        "attention_dropout": 0.0,
        "use_sliding_window": False,
        "sliding_window": None,
        "max_window_layers": LAYERS,
        "layer_types": ["full_attention"] * LAYERS,
        "tie_word_embeddings": False,
        "vocab_size": vocab,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": pad,
        "torch_dtype": "float32",
        "use_cache": True,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "generation_config.json").write_text(
        json.dumps({"bos_token_id": bos, "eos_token_id": eos, "pad_token_id": pad}, indent=2)
    )
    # The random model may emit `</think>`, so it can show both reasoning and answer.
    banned = [
        bos,
        eos,
        pad,
        tok.token_to_id(ENDOFTEXT),
        tok.token_to_id(USER),
        tok.token_to_id(ASSISTANT),
        tok.token_to_id(THINK_OPEN),
    ]
    banned += range(tok.get_vocab_size(), vocab)
    save_file(
        _weights(variant, vocab, chain, banned), str(folder / "model.safetensors"), metadata={"format": "pt"}
    )
    return folder
