"""Builds a tiny BERT cross-encoder (one output label) with a locally trained WordPiece tokenizer,
saved as a sentence-transformers CrossEncoder folder, so that reranking can be tested without a
download. Its weights are random (seeded): what it scores is meaningless, how Enclave uses the
scores is what the tests check."""

from __future__ import annotations

from pathlib import Path

WORDS = (
    "the crane at berth seven lifts containers harbour dues parking permit canteen soup tuesday "
    "budget capital euros million board approved staff building blue car park tide metres"
).split()


def build_tiny_cross_encoder(folder: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(
        [" ".join(WORDS)] * 4, trainers.WordPieceTrainer(vocab_size=200, special_tokens=specials)
    )
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        sep_token="[SEP]",
        cls_token="[CLS]",
        pad_token="[PAD]",
        mask_token="[MASK]",
        model_max_length=128,
    )
    fast.save_pretrained(str(folder))
    torch.manual_seed(7)
    config = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=1,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=1,
    )
    BertForSequenceClassification(config).save_pretrained(str(folder))
    return folder
