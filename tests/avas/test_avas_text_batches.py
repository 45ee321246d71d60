"""The text tower's fast path (avas/text_batches.py: padded, length-grouped batches) equals the
reference (one string per call, upstream) in float32 and float64, in input order."""
import pytest
import torch

from avas.align_model import ALIGN, encode_texts, encode_texts_reference
from avas.data import read_recall_csv, unique_pois
from avas.text_batches import encode_texts_batched
from tests.avas.avas_testlib import RECALL_CSV, fill_deterministic, make_small_bert


@pytest.fixture(scope='module')
def model(tmp_path_factory):
    torch.set_num_threads(1)
    bert = make_small_bert(str(tmp_path_factory.mktemp('bert')))
    return fill_deterministic(ALIGN(bert_path=bert), seed=7).eval()


@pytest.fixture(scope='module')
def texts():
    names = [n for _, n in unique_pois(read_recall_csv(RECALL_CSV))][:40]
    return names + ['普陀山' * 30, 'Hello Kitty乐园', 'x']  # a truncated (> 50 tokens) one, Latin, 1 char


@pytest.mark.parametrize('dtype,atol', [(torch.float32, 2e-6), (torch.float64, 1e-12)])
def test_batched_text_embeddings_equal_reference(model, texts, dtype, atol):
    m = model.to(dtype)
    try:
        ref = encode_texts_reference(m, texts, torch.device('cpu'))
        fast = encode_texts_batched(m, texts, torch.device('cpu'), batch_size=16)
    finally:
        model.float()
    assert ref.dtype == fast.dtype == dtype and fast.shape == (len(texts), 512)
    torch.testing.assert_close(fast, ref, rtol=0, atol=atol)


def test_batch_size_flag_chooses_the_path(model, texts):
    cpu = torch.device('cpu')
    assert torch.equal(encode_texts(model, texts[:5], cpu, batch_size=1), encode_texts_reference(model, texts[:5], cpu))
    assert torch.equal(encode_texts(model, texts[:5], cpu, batch_size=4),
                       encode_texts_batched(model, texts[:5], cpu, batch_size=4))
    assert encode_texts(model, [], cpu).shape == (0, 512)
