"""parse_dataset.py on hand-written TSV rows: outputs, each malformed case, vocab keep/rebuild."""
import os
import pickle

import numpy as np
import pytest

from common.errors import InputError
from common.vocab import Vocabulary, build_vocab
from hsl import parse_dataset
from hsl.data import load_records, load_vocab


def feats(n, seed, dim=4):
    return np.random.RandomState(seed).rand(n, dim).astype(np.float32)


def run_parse(root, *extra, splits=('train',)):
    parse_dataset.main(['--data_path', str(root), '--feature_dim', '4', '--no_progress',
                        '--splits', *splits, *extra])


def test_parse_outputs_products_queries_and_features(tmp_path, hh):
    f1, f2, f3 = feats(2, 1), feats(1, 2), feats(3, 3)
    rows = [hh.tsv_row(7, f1, 'Red Dress', 1), hh.tsv_row(8, f2, 'blue shoes', 2),
            hh.tsv_row(7, feats(2, 99), 'red dress', 3),   # repeated product: first occurrence wins
            hh.tsv_row(9, f3, 'Red Dress', 4)]             # repeated query text
    hh.write_tsv(str(tmp_path / 'KDDCup2020' / 'train' / 'train.tsv'), rows)
    run_parse(tmp_path, '--vocab_threshold', '1')
    folder = tmp_path / 'KDDCup2020' / 'train'
    features = np.load(folder / 'train.features.npy')
    np.testing.assert_array_equal(features, np.concatenate([f1, f2, f3]))
    assert (folder / 'train.ids.txt').read_text().split() == ['7', '8', '9']
    prods = load_records(str(folder / 'train.products.pkl'))
    prods.load_images(str(folder / 'train.ids.txt'), str(folder / 'train.features.npy'))
    assert len(prods) == 3 and prods(7, 20).dtype == np.float32
    np.testing.assert_array_equal(prods(9, 20), f3)
    np.testing.assert_array_equal(prods.class_labels, [0, 1, 0, 0, 1, 2])
    dup = load_records(str(folder / 'train.queries.duplicate.pkl'))
    assert [dup(i) for i in range(len(dup))] == [('Red Dress', 7), ('blue shoes', 8), ('red dress', 7), ('Red Dress', 9)]
    uniq = load_records(str(folder / 'train.queries.pkl'))
    assert [uniq(i) for i in range(len(uniq))] == [('Red Dress', 7), ('blue shoes', 8), ('red dress', 7)]
    vocab = load_vocab(str(tmp_path / 'KDDCup2020' / 'kddcup_vocab.pkl'))
    assert [vocab.idx2word[i] for i in range(len(vocab))] == ['<pad>', '<start>', '<end>', '<unk>',
                                                             'red', 'dress', 'blue', 'shoes']


def test_valid_pools_in_row_order(tmp_path, hh):
    rows = [hh.tsv_row(5, feats(1, 0), 'bag', 30), hh.tsv_row(6, feats(1, 1), 'hat', 31),
            hh.tsv_row(7, feats(2, 2), 'bag', 30), hh.tsv_row(5, feats(1, 0), 'hat', 31)]
    hh.write_tsv(str(tmp_path / 'KDDCup2020' / 'valid' / 'valid.tsv'), rows)
    run_parse(tmp_path, splits=('valid',))
    queries = load_records(str(tmp_path / 'KDDCup2020' / 'valid' / 'valid.queries.pkl'))
    assert [queries(i) for i in range(len(queries))] == [(('30', 'bag'), [5, 7]), (('31', 'hat'), [6, 5])]


def test_vocab_pickle_uses_scan_class_path_and_existing_vocab_is_kept(tmp_path, hh, capsys):
    hh.write_tsv(str(tmp_path / 'KDDCup2020' / 'train' / 'train.tsv'),
                 [hh.tsv_row(1, feats(1, 0), 'a b b', 1)])
    run_parse(tmp_path, '--vocab_threshold', '1')
    path = tmp_path / 'KDDCup2020' / 'kddcup_vocab.pkl'
    raw = path.read_bytes()
    assert b'cvocab\nVocabulary\n' in raw and b'common' not in raw
    # the authors' file: keep it, say so, succeed
    authors = Vocabulary()
    for w in ['<pad>', '<start>', '<end>', '<unk>', 'authors']:
        authors.add_word(w)
    path.write_bytes(pickle.dumps(authors, protocol=2).replace(b'ccommon.vocab\n', b'cvocab\n'))
    run_parse(tmp_path)
    assert 'keeping existing vocabulary' in capsys.readouterr().out
    assert 'authors' in load_vocab(str(path)).word2idx
    run_parse(tmp_path, '--rebuild_vocab', '--vocab_threshold', '1')
    assert 'authors' not in load_vocab(str(path)).word2idx and len(load_vocab(str(path))) == 6


def test_upstream_vocab_pickle_loads(hh):
    vocab = load_vocab(os.path.join(hh.DATA, 'upstream_vocab.pkl'))
    assert isinstance(vocab, Vocabulary) and len(vocab) == 10 and vocab('zzz') == 3 and vocab('bag') == 8


def _bad_rows(hh):
    good = hh.tsv_row(1, feats(2, 0), 'ok', 1)
    cols = good.rstrip('\n').split('\t')

    def variant(i, value):
        c = list(cols)
        c[i] = value
        return '\t'.join(c) + '\n'
    return {
        'columns': ('\t'.join(cols[:8]) + '\n', 'expected 9 tab-separated columns, found 8'),
        'product_id': (variant(0, 'abc'), "field 'product_id': not an integer"),
        'query_id': (variant(8, '12x'), "field 'query_id': not an integer"),
        'base64': (variant(5, cols[5][:-3] + '!!='), "field 'features': bad base64"),
        'features_size': (variant(5, hh.b64(feats(3, 0))), "field 'features': decodes to 48 bytes, num_boxes needs 32"),
        'boxes_size': (variant(4, hh.b64(np.zeros((1, 4), np.float32))), "field 'boxes': decodes to 16 bytes"),
        'labels_size': (variant(6, hh.b64(np.zeros(3, np.int64))), "field 'class_labels'"),
        'num_boxes': (variant(3, '0'), "field 'num_boxes': must be >= 1"),
    }


@pytest.mark.parametrize('case', ['columns', 'product_id', 'query_id', 'base64', 'features_size',
                                  'boxes_size', 'labels_size', 'num_boxes'])
def test_malformed_row_names_file_line_and_field(case, tmp_path, hh):
    bad, message = _bad_rows(hh)[case]
    tsv = tmp_path / 'KDDCup2020' / 'train' / 'train.tsv'
    hh.write_tsv(str(tsv), [hh.tsv_row(1, feats(2, 0), 'ok', 1), bad])
    with pytest.raises(InputError) as err:
        run_parse(tmp_path)
    text = str(err.value)
    assert '%s:3' % tsv in text and message in text and '--skip_bad_rows' in text
    assert not list((tmp_path / 'KDDCup2020' / 'train').glob('.*.tmp'))  # no partial features file


def test_skip_bad_rows_counts_and_keeps_good_rows(tmp_path, hh, capsys):
    bad = [row for row, _ in _bad_rows(hh).values()]
    good = [hh.tsv_row(2, feats(1, 5), 'fine', 2), hh.tsv_row(3, feats(2, 6), 'fine too', 3)]
    hh.write_tsv(str(tmp_path / 'KDDCup2020' / 'train' / 'train.tsv'), [good[0]] + bad + [good[1]])
    run_parse(tmp_path, '--skip_bad_rows')
    assert 'skipped 8 malformed rows' in capsys.readouterr().out
    np.testing.assert_array_equal(np.load(tmp_path / 'KDDCup2020' / 'train' / 'train.features.npy'),
                                  np.concatenate([feats(1, 5), feats(2, 6)]))


def test_bad_header_is_reported(tmp_path, hh):
    tsv = tmp_path / 'KDDCup2020' / 'train' / 'train.tsv'
    hh.write_tsv(str(tsv), [hh.tsv_row(1, feats(1, 0), 'x', 1)], header='a\tb\n')
    with pytest.raises(InputError) as err:
        run_parse(tmp_path)
    assert '%s:1' % tsv in str(err.value) and 'header' in str(err.value)


def test_missing_tsv_is_a_clear_error(tmp_path):
    with pytest.raises(InputError) as err:
        run_parse(tmp_path)
    assert 'train.tsv not found' in str(err.value)


def test_vocab_pickle_round_trip(tmp_path):
    vocab = build_vocab(['Red dress', "women's red shoes", 'red'], 2)
    parse_dataset.write_vocab(vocab, str(tmp_path / 'v.pkl'))
    again = load_vocab(str(tmp_path / 'v.pkl'))
    assert (again.word2idx, again.idx2word, again.idx) == (vocab.word2idx, vocab.idx2word, vocab.idx)
    assert again.word2idx == {'<pad>': 0, '<start>': 1, '<end>': 2, '<unk>': 3, 'red': 4}
