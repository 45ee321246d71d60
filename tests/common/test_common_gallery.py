"""common.gallery: HTML with relative image paths (still loads after the folder moves, in headless
Chromium) and a PNG contact sheet of the expected size; ground truth marked; bad images drawn as placeholders."""
import os
import re
import shutil
import subprocess
from xml.etree import ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from common.gallery import GT_COLOR, PAD, ROW_HEAD_H, THUMB, TITLE_H, sheet_size, write_gallery
from tests.browser import CHROMIUM_FLAGS, PROBE



def _photo(path, width, color):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new('RGB', (width, 60), color).save(path)
    return str(path)


def _rows(src):
    """Two queries: text -> 3 images (one GT, one missing), image -> 2 captions; same file in both rows."""
    red = _photo(src / 'a' / 'red photo (1).jpg', 101, (220, 0, 0))
    blue = _photo(src / 'b' / '普陀山.png', 83, (0, 0, 220))
    same_name = _photo(src / 'c' / 'red photo (1).jpg', 67, (0, 200, 0))  # same basename, other file
    return [
        {'query': 'a red <b>photo</b>', 'query_image': None,
         'results': [{'image': red, 'text': 'red things', 'score': 0.91234, 'gt': True, 'name': 'red.jpg'},
                     {'image': same_name, 'text': None, 'score': 0.5, 'gt': False, 'name': 'green.jpg'},
                     {'image': str(src / 'gone.jpg'), 'text': None, 'score': -0.25, 'gt': False, 'name': 'gone.jpg'}]},
        {'query': 'blue.png', 'query_image': blue,
         'results': [{'image': None, 'text': 'a blue square', 'score': 1.5, 'gt': True, 'name': 'caption 3'},
                     {'image': red, 'text': None, 'score': 0.1, 'gt': False, 'name': 'red again'}]},
    ]


def test_html_uses_relative_copies_with_unique_names_and_marks_ground_truth(tmp_path):
    rows = _rows(tmp_path / 'src')
    html_path, png_path = write_gallery(tmp_path / 'out', 'demo <gallery>', rows)
    assert html_path == str(tmp_path / 'out' / 'gallery.html') and png_path == str(tmp_path / 'out' / 'gallery.png')
    root = ET.fromstring(open(html_path, encoding='utf-8').read().replace('<!DOCTYPE html>', ''))
    srcs = [img.attrib['src'] for img in root.iter('img')]
    # red (row 1), green (row 1), blue query (row 2), red again (row 2, reuses the first copy)
    assert len(srcs) == 4 and srcs[0] == srcs[3]
    assert all(s.startswith('images/') and not os.path.isabs(s) for s in srcs)
    assert len(set(srcs)) == 3 and all(re.fullmatch(r'images/\d{3}_[A-Za-z0-9._-]+', s) for s in srcs)
    sizes = [Image.open(tmp_path / 'out' / s).size[0] for s in srcs]
    assert sizes == [101, 67, 83, 101]
    cells = [td for td in root.iter('td')]
    gt = [td.attrib['class'] == 'cell gt' for td in cells]
    assert gt == [False, True, False, False, False, True, False]  # query cells are never GT
    text = ''.join(root.itertext())
    assert 'score 0.9123' in text and 'score -0.2500' in text and 'score 1.5000' in text
    assert 'gone.jpg: image file not found' in text  # the missing image is named, not a broken <img>
    assert 'a red <b>photo</b>' in text and 'demo <gallery>' in text  # escaped, shown literally
    assert not [e for e in os.listdir(tmp_path / 'out') if e.endswith('.tmp')]


def test_png_contact_sheet_has_expected_size_and_pictures(tmp_path):
    rows = _rows(tmp_path / 'src')
    _, png_path = write_gallery(tmp_path / 'out', 'demo', rows)
    img = Image.open(png_path)
    img.load()
    assert img.format == 'PNG'
    assert img.size == sheet_size(2, 1 + 3) == (4 * (THUMB + 2 * PAD), TITLE_H + 2 * (ROW_HEAD_H + THUMB + 3 * 14 + 2 * PAD))
    px = np.asarray(img.convert('RGB'))
    cell_w, cell_h = THUMB + 2 * PAD, THUMB + 3 * 14 + 2 * PAD
    # row 1 has no query image but the column is kept: results start in column 1; first is red, GT-framed
    y = TITLE_H + ROW_HEAD_H + PAD + THUMB // 2
    assert tuple(px[y, 1 * cell_w + PAD + THUMB // 2]) == (220, 0, 0)
    assert tuple(px[y, 1 * cell_w + PAD - 1]) == GT_COLOR
    assert tuple(px[y, 2 * cell_w + PAD + THUMB // 2]) == (0, 200, 0)
    y2 = y + ROW_HEAD_H + cell_h
    assert tuple(px[y2, PAD + THUMB // 2]) == (0, 0, 220)  # row 2's query image in column 0


def test_gallery_without_images_and_with_no_results(tmp_path):
    html_path, png_path = write_gallery(tmp_path, 't', [{'query': 'q', 'query_image': None, 'results': [
        {'image': None, 'text': '一只猫', 'score': 0.3, 'gt': False, 'name': 'caption 0'}]},
        {'query': 'nothing', 'query_image': None, 'results': []}])
    assert Image.open(png_path).size == sheet_size(2, 1)
    assert '<img' not in open(html_path, encoding='utf-8').read() and '一只猫' in open(html_path, encoding='utf-8').read()
    assert not os.path.exists(tmp_path / 'images') or os.listdir(tmp_path / 'images') == []


def test_corrupt_image_is_a_placeholder_not_a_failure(tmp_path):
    bad = tmp_path / 'bad.jpg'
    bad.write_bytes(b'\xff\xd8\xff\xe0 not really a jpeg')
    html_path, _ = write_gallery(tmp_path / 'out', 't', [{'query': 'q', 'query_image': None, 'results': [
        {'image': str(bad), 'text': None, 'score': 0.3, 'gt': True, 'name': 'bad'}]}])
    page = open(html_path, encoding='utf-8').read()
    assert '<img' not in page and 'corrupt or unreadable image' in page


def _chromium():
    exe = shutil.which('chromium') or shutil.which('chromium-browser')
    if exe is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium) -- browser test skipped")
    return exe


def _loaded_widths(exe, html_path, tmp_path):
    probe = os.path.join(os.path.dirname(html_path), 'probe.html')  # same folder: same relative src
    text = open(html_path, encoding='utf-8').read()
    with open(probe, 'w', encoding='utf-8') as f:
        f.write(text.replace('</body>', PROBE + '</body>'))
    cmd = [exe] + CHROMIUM_FLAGS + ['--user-data-dir=%s' % (tmp_path / 'profile'), '--virtual-time-budget=10000',
                                    '--allow-file-access-from-files', '--dump-dom', 'file://' + probe]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    assert 'data-probe="done"' in dom
    imgs = re.findall(r'<img [^>]*>', dom)
    assert all('data-loaded="1"' in im for im in imgs), imgs
    return [int(re.search(r'data-natural-width="(\d+)"', im).group(1)) for im in imgs]


@pytest.mark.browser
def test_chromium_loads_every_image_also_after_the_folder_moves(tmp_path):
    exe = _chromium()
    src = tmp_path / 'src'
    html_path, _ = write_gallery(tmp_path / 'out', 'demo', _rows(src))
    assert _loaded_widths(exe, html_path, tmp_path) == [101, 67, 83, 101]
    moved = tmp_path / 'elsewhere' / 'moved'
    shutil.move(str(tmp_path / 'out'), str(moved))
    shutil.rmtree(src)  # the originals are gone too: the page uses its own copies
    assert _loaded_widths(exe, str(moved / 'gallery.html'), tmp_path) == [101, 67, 83, 101]


def test_captions_wrap_at_spaces_and_text_without_spaces_by_characters():
    from PIL import ImageDraw, ImageFont

    from common.gallery import _wrap
    draw, font = ImageDraw.Draw(Image.new('RGB', (4, 4))), ImageFont.load_default(size=11)
    lines = _wrap(draw, 'a mountain behind a bench and a boat', font, THUMB - 4, 9)
    assert ' '.join(lines) == 'a mountain behind a bench and a boat' and len(lines) == 2
    assert all(draw.textlength(line, font=font) <= THUMB - 4 for line in lines)
    cjk = _wrap(draw, '普陀山' * 20, font, THUMB - 4, 2)
    assert len(cjk) == 2 and ''.join(cjk) == ('普陀山' * 20)[:len(''.join(cjk))]
    assert _wrap(draw, '', font, THUMB, 1) == []
