"""CSV parsing of the real files, POI ordering and the POI inputs of a pair (spec §3, quirks 17-21)."""
import numpy as np
import pytest

from avas.data import (DataFormatError, pair_label, parse_ranking_line, poi_inputs, poi_priority, poi_text,
                       read_ranking_lines, read_recall_csv, read_recall_results, unique_pois, url_to_local)
from avas.poi_tables import load_table
from tests.avas.avas_testlib import PIC_NUM, RECALL_CSV, VAL_CSV


def test_real_recall_csv_rows_and_pois():
    rows = read_recall_csv(RECALL_CSV)
    assert len(rows) == 5000
    pois = unique_pois(rows)
    assert len(pois) == 500
    assert pois[0] == ('10060', '北海海底世界')  # first-appearance order, deterministic
    assert sorted(int(r.rank_number) for r in rows if r.poi_id == '10060') == list(range(1, 11))
    assert any(name == 'Hello Kitty乐园' for _, name in pois)
    assert sum(1 for r in rows if '.' not in r.url.rsplit('/', 1)[-1]) > 2000  # ~44% without extension


def test_recall_csv_errors_name_file_and_line(tmp_path):
    bad = tmp_path / 'bad.csv'
    bad.write_text('1,a,http://x/1.jpg,1,2,3,4\n\n2,b,c,http://x/2.jpg,1,2,3,4\n', encoding='utf-8')
    with pytest.raises(DataFormatError, match=r'bad.csv:3: expected 7'):
        read_recall_csv(str(bad))
    res = tmp_path / 'res.csv'
    res.write_text('1,a,d/1_1.jpg,0.5\n1,a,d/1_2.jpg,abc\n', encoding='utf-8')
    with pytest.raises(DataFormatError, match=r'res.csv:2: score'):
        read_recall_results(str(res))


def test_real_ranking_csv_records():
    lines = read_ranking_lines(VAL_CSV)
    assert len(lines) == 1000
    records = [parse_ranking_line(l, n, VAL_CSV) for n, l in lines]
    labels = [pair_label(r) for r in records]
    assert sum(labels) == 451  # 45.1% of val has ctr_a > ctr_b
    assert sum(1 for r in records if r.poi_names.strip() == '') == 295
    assert max(len(r.poi_names.split(',')) for r in records) == 9
    first = records[0]
    assert first.item_id == 'val_000001' and first.title.startswith('直飞哈尔滨漠河')
    assert first.poi_names == '漠河,北极村,白桦林,北极圣诞村'
    assert url_to_local(first.oss_url, 'root').endswith('root/e8d2cd511193b50c9d2b379a22225f49.jpg')


def test_ranking_line_errors_and_oss_prefix():
    with pytest.raises(DataFormatError, match=r'f.csv:4: no "\$record\$"'):
        parse_ranking_line('just text', 4, 'f.csv')
    with pytest.raises(DataFormatError, match='expected 10'):
        parse_ranking_line('a$record$b', 5, 'f.csv')
    with pytest.raises(DataFormatError, match='ctr_a'):
        parse_ranking_line('$record$'.join(['i', 'a', 'b', 'x', '1', 't', 'c', 'o1', 'o2', '']), 6, 'f.csv')
    r = parse_ranking_line('$record$'.join(['i', 'a', 'b', '2', '2', 't', 'c', 'oss://poi-image/p/x.jpg', 'o2', '']))
    assert r.oss_url == 'p/x.jpg' and pair_label(r) == 0.0  # tie -> label 0


def test_poi_priority_orders_real_table():
    pic = load_table(PIC_NUM, 3)  # upstream's pickled dict, through the allow-list
    assert len(pic) == 2866
    name_a, name_b = sorted(pic, key=lambda n: -poi_priority(pic[n]))[:2]
    assert poi_priority(pic[name_a]) >= poi_priority(pic[name_b])
    assert poi_priority([1, 2, 3]) == 1 + 10 + 9


def test_poi_inputs_order_padding_and_quirks():
    pic = {'A': [0, 0, 1], 'B': [0, 1, 0], 'C': [5, 0, 0], 'D': [0, 0, 0]}  # weights 3, 5, 5, 0
    vec = {n: np.full(512, i + 1, np.float32) for i, n in enumerate('ABCDEFG')}
    m, t, n = poi_inputs('A,B,C,D,E,F,G', pic, vec, vec)
    assert n == 5
    # stable sort by -(n0 + 5 n1 + 3 n2): B(5), C(5), A(3), D(0), E(0) [F, G cut]
    assert m[:, 0].tolist() == [2, 3, 1, 4, 5]
    m, t, n = poi_inputs('', pic, vec, vec)
    assert n == 0 and float(m.abs().sum()) == 0
    m, t, n = poi_inputs('A', pic, vec, vec)  # one character: "no POI" for the vectors (quirk 17)
    assert n == 0 and float(t.abs().sum()) == 0
    m, t, n = poi_inputs('A, B', pic, vec, vec)  # ' B' misses the vector tables (quirk 18)
    assert n == 2 and m[0, 0].item() == 0.0 and m[1, 0].item() == 1.0  # ' B' sorted first (priority strips)


def test_poi_text_is_whole_string_or_title():
    base = ['i', 'a', 'b', '1', '2', 'the title', 'c', 'o1', 'o2']
    assert poi_text(parse_ranking_line('$record$'.join(base + ['A,B']))) == 'A,B'
    assert poi_text(parse_ranking_line('$record$'.join(base + ['X']))) == 'X'  # len 1: its own text
    assert poi_text(parse_ranking_line('$record$'.join(base + ['   ']))) == 'the title'


def test_real_pair_poi_order_by_table():
    """val line 2: weights n0 + 5 n1 + 3 n2 from the real table: 南浔古镇 1031+15, 朱家角 809+12,
    辰山植物园 539+12, 上海植物园 357+24, 古镇风景区 5, 蓝精灵乐园… absent (0) -> cut at 5."""
    pic = load_table(PIC_NUM, 3)  # upstream's pickled dict, through the allow-list
    record = parse_ranking_line(read_ranking_lines(VAL_CSV)[1][1], 2, VAL_CSV)
    names = record.poi_names.split(',')
    vec = {n: np.full(512, i, np.float32) for i, n in enumerate(names)}
    m, t, n = poi_inputs(record.poi_names, pic, vec, vec)
    order = [names[int(v)] for v in m[:, 0].tolist()]
    assert order == ['南浔古镇', '朱家角', '辰山植物园', '上海植物园', '古镇风景区'] and n == 5


def test_avas_pretrain_csv_is_recall_format():
    import os
    from tests.avas.avas_testlib import DATA
    rows = read_recall_csv(os.path.join(DATA, 'pretrain_model_test_dataset.csv'))
    assert len(rows) == 1000 and len(unique_pois(rows)) == 100


def test_normalize_image_cv2_bilinear_on_uint8():
    """1x2 -> 1x4 with half-pixel centres: source x = 0, .25, .75, 1 (clamped) -> 0, 63.75, 191.25, 255,
    rounded to uint8 before the float64 ImageNet normalisation; CHW float32 out."""
    from avas.data import MEAN, STD, normalize_image
    img = np.zeros((1, 2, 3), np.uint8)
    img[0, 1] = 255
    out = normalize_image(img, size=(4, 1))
    assert out.shape == (3, 1, 4) and out.dtype == np.float32
    pixels = out.transpose(1, 2, 0) * np.array(STD) + np.array(MEAN)
    assert np.allclose(pixels[0, :, 0] * 255, [0, 64, 191, 255], atol=1e-3)  # integers: uint8 rounding
    default = normalize_image(np.full((50, 80, 3), 128, np.uint8))
    assert default.shape == (3, 224, 224)
    assert np.allclose(default[0], (128 / 255 - MEAN[0]) / STD[0], atol=1e-6)


def test_upstream_table_converts_to_an_equal_plain_npz(tmp_path):
    import shutil
    from avas.poi_tables import PIC_NUM_TABLE, convert_folder
    shutil.copy(PIC_NUM, tmp_path)
    upstream = load_table(str(tmp_path / PIC_NUM_TABLE), 3)
    [written] = convert_folder(str(tmp_path))
    assert written.endswith('.npz')
    with np.load(written, allow_pickle=False) as plain:  # no pickle left in the converted file
        assert plain['values'].dtype == np.int64
    converted = load_table(str(tmp_path / PIC_NUM_TABLE), 3)  # the .npz twin is preferred now
    assert set(converted) == set(upstream)
    assert all(list(converted[k]) == list(upstream[k]) for k in upstream)
