"""Encoding a free-text query with a trained text encoder (one caption, its own text block)."""
import torch

from common.text import tokenize
from common.vocab import caption_to_ids
from lhsc.data import collate_fn


def encode_caption(model, vocab, text):
    """(1, words, E) float32 embedding of `text` and its [length] list, as the split captions are built."""
    ids = caption_to_ids(vocab, text, tokenize)
    _, captions, lengths, _ = collate_fn([(torch.zeros(1), torch.Tensor(ids), 0, 0)])
    with torch.no_grad():
        return model.txt_enc(captions.to(model.device), lengths).float().cpu().numpy(), lengths
