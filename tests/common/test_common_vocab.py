import json
import os

import pytest

from common.vocab import Vocabulary, build_vocab, deserialize_vocab, serialize_vocab


@pytest.mark.parametrize('rel_path, size', [
    ('lhsc/vocab/f30k_precomp_vocab.json', 8481),
    ('lhsc/vocab/coco_precomp_vocab.json', 11353),
    ('m2hse/vocab/corel5k_precomp_vocab.json', 264),
])
def test_shipped_vocab_files_load_with_exact_sizes(shared_data, rel_path, size):
    vocab = deserialize_vocab(os.path.join(shared_data, rel_path))
    assert len(vocab) == size
    assert vocab.idx == size
    assert vocab('<pad>') == 0 and vocab('<unk>') == 3
    assert vocab('no-such-word-xyz') == vocab('<unk>')
    # idx2word is the inverse of word2idx
    assert all(vocab.idx2word[i] == w for w, i in list(vocab.word2idx.items())[:500])


def test_serialize_round_trip_keeps_scan_layout(tmp_path):
    vocab = build_vocab(['A dog runs.', 'a cat runs', 'the dog sleeps'], threshold=2)
    assert list(vocab.word2idx) == ['<pad>', '<start>', '<end>', '<unk>', 'a', 'dog', 'runs']
    path = tmp_path / 'v.json'
    serialize_vocab(vocab, path)
    raw = json.loads(path.read_text())
    assert set(raw) == {'word2idx', 'idx2word', 'idx'}
    assert raw['idx2word']['5'] == 'dog'  # JSON keys are strings, as SCAN's files
    again = deserialize_vocab(path)
    assert again.word2idx == vocab.word2idx
    assert again.idx2word == vocab.idx2word
    assert again('cat') == 3 and again('dog') == 5


def test_add_word_is_idempotent():
    vocab = Vocabulary()
    for w in ['<unk>', 'x', 'x', 'y']:
        vocab.add_word(w)
    assert len(vocab) == 3 and vocab.idx == 3
    assert vocab('y') == 2 and vocab('z') == 0


def test_bad_vocab_file_is_a_clear_error(tmp_path):
    bad = tmp_path / 'bad.json'
    bad.write_text('{"word2idx": {}')
    with pytest.raises(ValueError, match='bad.json.*line 1'):
        deserialize_vocab(bad)
    missing_field = tmp_path / 'nofield.json'
    missing_field.write_text('{"word2idx": {}, "idx": 0}')
    with pytest.raises(ValueError, match="idx2word"):
        deserialize_vocab(missing_field)
    with pytest.raises(FileNotFoundError, match='nope.json'):
        deserialize_vocab(tmp_path / 'nope.json')


def test_caption_to_ids_wraps_tokens_in_start_end_and_maps_unknown_words():
    from common.vocab import caption_to_ids
    vocab = build_vocab(['A dog runs.', 'a cat runs'], threshold=1)
    assert caption_to_ids(vocab, 'A dog flies') == [1, vocab('a'), vocab('dog'), 3, 2]
    assert caption_to_ids(vocab, 'x y', tokenize=str.split) == [1, 3, 3, 2]


def test_pad_captions_zero_pads_and_sorting_is_stable_longest_first():
    import torch
    from common.vocab import pad_captions, sort_by_caption_length
    batch = [('a', [1, 5, 2]), ('b', torch.Tensor([1, 6, 7, 2])), ('c', [1, 8, 9]), ('d', [1, 2])]
    ordered = sort_by_caption_length(batch)
    assert [item[0] for item in ordered] == ['b', 'a', 'c', 'd']
    targets, lengths = pad_captions([item[1] for item in ordered])
    assert lengths == [4, 3, 3, 2]
    assert targets.dtype == torch.long
    assert targets.tolist() == [[1, 6, 7, 2], [1, 5, 2, 0], [1, 8, 9, 0], [1, 2, 0, 0]]
