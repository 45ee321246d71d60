"""Fast path of the text tower: embed many texts in padded, length-grouped batches.

Reference: avas.align_model.encode_texts_reference, upstream's one string per tokenizer/BERT call.
Here: texts sorted by length (little padding), `batch_size` per call with attention masks, so the
padding is inert; results are returned in input order. float32 either way; the two agree to ~1e-6
(tests/avas/test_avas_text_batches.py pins them, bench/avas_recall_bench.py times them).
`encode_texts(..., batch_size)` chooses: --text_batch_size 1 is the reference.
"""
import torch

from avas.tokenization import tokenize


@torch.no_grad()
def encode_texts_batched(model, texts, device, norm=True, batch_size=64):
    texts = list(texts)
    if not texts:
        return torch.zeros((0, model.text_hidden_layer.out_features), device=device)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = []
    for start in range(0, len(texts), batch_size):
        chunk = [texts[i] for i in order[start:start + batch_size]]
        out.append(model.encode_text(tokenize(model.tokenizer, chunk, device), norm=norm))
    embeddings = torch.cat(out)
    result = torch.empty_like(embeddings)
    result[torch.tensor(order, device=embeddings.device)] = embeddings
    return result
