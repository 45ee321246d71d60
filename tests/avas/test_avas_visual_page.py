"""The AVAS page (avas_page/visualization_csv.py) from the real sample scores of the released model on
the 30 real photos: 6 images a row, descending score; in headless Chromium every image loads and
the rendered order is by descending score."""
import os
import re
import runpy
import shutil
import subprocess
from xml.etree import ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from tests.avas.avas_testlib import DATA, PHOTOS, REPO
from tests.browser import CHROMIUM_FLAGS, PROBE

SAMPLE = os.path.join(DATA, 'align_普陀山图片_with_MKG.csv')


def _local_csv(tmp_path):
    """The sample rows with their macOS paths mapped onto our copies of the same photos."""
    rows = []
    for line in open(SAMPLE, encoding='utf-8'):
        path, score = line.strip().split(',')
        rows.append((os.path.join(PHOTOS, os.path.basename(path)), float(score)))
    out = tmp_path / 'align_普陀山图片_with_MKG.csv'
    out.write_text(''.join('%s,%r\n' % r for r in rows), encoding='utf-8')
    return str(out), rows


def _make_page(tmp_path):
    csv, rows = _local_csv(tmp_path)
    main = runpy.run_path(os.path.join(REPO, 'avas', 'avas_page', 'visualization_csv.py'))['main']
    html = main(['--csv_file', csv, '--out_dir', str(tmp_path / 'html_align_with_mkg')])
    return html, rows


def test_page_structure_six_a_row_descending(tmp_path):
    html, rows = _make_page(tmp_path)
    assert re.search(r'align_普陀山图片_with_MKG_\d\d-\d\d-\d\d\.html$', html)
    table = ET.parse(html).getroot().find('body/table')
    assert table.attrib == {'border': '2', 'width': '100%'}
    trs = table.findall('tr')
    assert [len(tr.findall('td/div/img')) for tr in trs] == [6, 6, 6, 6, 6]
    srcs = [img.attrib['src'] for img in table.iter('img')]
    scores = [float(td.text) for tr in trs for td in tr.findall('td') if td.text]
    assert scores == sorted((s for _, s in rows), reverse=True)
    assert not any(os.path.isabs(src) for src in srcs)  # relative to the page: the folder can move
    page_dir = os.path.dirname(html)
    assert [os.path.normpath(os.path.join(page_dir, src)) for src in srcs] == [p for p, _ in sorted(rows, key=lambda r: -r[1])]
    assert scores[0] == pytest.approx(0.5987096)  # the released model's best match in the sample


def _chromium():
    exe = shutil.which('chromium')
    if exe is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium) -- browser test skipped")
    return exe


def _render(exe, page, tmp_path, *extra):
    cmd = [exe] + CHROMIUM_FLAGS + ['--user-data-dir=%s' % (tmp_path / 'profile'), '--virtual-time-budget=10000',
                                    '--allow-file-access-from-files'] + list(extra) + ['file://' + page]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _probe_copy(html):
    text = open(html, encoding='utf-8').read()
    probe = html.replace('.html', '_probe.html')  # same folder: same relative/absolute src semantics
    open(probe, 'w', encoding='utf-8').write(text.replace('</body>', PROBE + '</body>'))
    return probe


@pytest.mark.browser
def test_chromium_loads_every_image_in_descending_order(tmp_path):
    exe = _chromium()
    html, rows = _make_page(tmp_path)
    dom = _render(exe, _probe_copy(html), tmp_path, '--dump-dom').stdout
    assert 'data-probe="done"' in dom
    imgs = re.findall(r'<img [^>]*>', dom)
    assert len(imgs) == 30
    assert all('data-loaded="1"' in im for im in imgs), [im for im in imgs if 'data-loaded="1"' not in im]
    widths = [int(re.search(r'data-natural-width="(\d+)"', im).group(1)) for im in imgs]
    expect_widths = [Image.open(p).size[0] for p, _ in sorted(rows, key=lambda r: -r[1])]
    assert widths == expect_widths  # the rendered images are the expected files, in score order
    scores = [float(s) for s in re.findall(r'<td>(-?[0-9.]+(?:e-?\d+)?)</td>', dom)]
    assert len(scores) == 30 and scores == sorted(scores, reverse=True)

    shot = tmp_path / 'page.png'
    _render(exe, html, tmp_path, '--screenshot=%s' % shot, '--window-size=1400,900', '--hide-scrollbars')
    pixels = np.asarray(Image.open(shot).convert('RGB'))
    assert pixels.shape[:2] == (900, 1400)
    top_left = pixels[:130, :700].reshape(-1, 3)
    assert len(np.unique(top_left, axis=0)) > 2000  # photos, not empty frames or broken-image icons


@pytest.mark.browser
def test_probe_detects_a_broken_image(tmp_path):
    exe = _chromium()
    html, _ = _make_page(tmp_path)
    text = open(html, encoding='utf-8').read()
    broken = re.sub(r'src="[^"]+"', 'src="/nonexistent/x.jpg"', text, count=1)
    open(html, 'w', encoding='utf-8').write(broken)
    dom = _render(exe, _probe_copy(html), tmp_path, '--dump-dom').stdout
    assert dom.count('data-loaded="0"') == 1 and dom.count('data-loaded="1"') == 29
