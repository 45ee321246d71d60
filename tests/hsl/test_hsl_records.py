"""Product top-k box selection, Query access and the Scores CSV."""
import numpy as np
import pytest

from hsl.records import Product, Query, Scores, box_areas, top_k_boxes


def test_top_k_boxes_largest_first_ties_in_file_order():
    boxes = np.array([[0, 0, 2, 2],     # area 4
                      [0, 0, 3, 3],     # 9
                      [1, 1, 3, 3],     # 4 (tie with row 0)
                      [0, 0, 1, 5]],    # 5
                     np.float32)
    np.testing.assert_array_equal(box_areas(boxes), [4, 9, 4, 5])
    assert list(top_k_boxes(boxes, 20)) == [1, 3, 0, 2]
    assert list(top_k_boxes(boxes, 2)) == [1, 3]
    assert list(top_k_boxes(boxes, 3)) == [1, 3, 0]


def test_product_call_returns_top_k_rows_as_float32():
    boxes = np.array([[0, 0, 1, 1], [0, 0, 5, 5], [0, 0, 2, 2], [0, 0, 9, 9], [0, 0, 3, 3]], np.float32)
    prods = Product([7, 8], [2, 3], boxes, np.arange(5), [10, 10], [20, 20])
    prods.features = np.arange(5 * 3, dtype=np.float32).reshape(5, 3)
    np.testing.assert_array_equal(prods(7, 20), prods.features[[1, 0]])
    np.testing.assert_array_equal(prods(8, 2), prods.features[[3, 4]])  # rows 2..4, areas 4, 81, 9
    assert prods(8, 1).dtype == np.float32 and prods(8, 1).shape == (1, 3)
    with pytest.raises(KeyError, match='product 99'):
        prods(99, 20)


def test_query_train_and_valid_access():
    train = Query('train', ['a b', 'c'], [0, 1, 0], [5, 6, 7])
    assert len(train) == 3 and train(2) == ('a b', 7)
    valid = Query('valid', ['x', 'y'], [1, 0], [5, 6, 7], query_ids=[11, 12], pool_offsets=[0, 2, 3])
    assert valid(0) == (('11', 'y'), [5, 6]) and valid(1) == (('12', 'x'), [7])


def test_scores_dump_csv_full_precision(tmp_path):
    rec = Scores()
    rec.add_item('11', 5, np.float32(0.1))
    rec.add_item('11', 6, -1.25)
    rec.dump(str(tmp_path / 's.csv'))
    lines = (tmp_path / 's.csv').read_text().splitlines()
    assert lines == ['query_id,product_id,score', '11,5,%r' % float(np.float32(0.1)), '11,6,-1.25']


def test_product_pickle_drops_features_but_reopens_them(tmp_path):
    import pickle
    np.save(tmp_path / 'f.npy', np.arange(6, dtype=np.float32).reshape(3, 2))
    (tmp_path / 'ids.txt').write_text('7\n8\n')
    prods = Product([7, 8], [1, 2], np.zeros((3, 4), np.float32), np.zeros(3), [1, 1], [1, 1])
    prods.load_images(str(tmp_path / 'ids.txt'), str(tmp_path / 'f.npy'))
    raw = pickle.dumps(prods)
    assert len(raw) < 2000
    again = pickle.loads(raw)  # what a 'spawn' DataLoader worker receives
    np.testing.assert_array_equal(again(8, 20), [[2, 3], [4, 5]])


def test_hsl_meter_is_an_exact_mean_and_logs_five_decimals():
    from hsl.utils import AverageMeter, LogCollector
    meter = AverageMeter()
    for v in (0.5, 1.0, 0.25):
        meter.update(v)
    assert meter.avg == (0.5 + 1.0 + 0.25) / 3  # upstream utils.py: no vsepp epsilon
    log = LogCollector()
    log.update('lr', 0.0002)
    log.update('Cnt Le', 4.5, 8)
    assert str(log) == 'lr 0.00020 (0.00020)  Cnt Le 4.50000 (4.50000)'
    log.reset()
    assert str(log) == 'lr 0  Cnt Le 0'  # reset meters print their bare value, as upstream
