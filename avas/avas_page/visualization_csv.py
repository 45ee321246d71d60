"""AVAS demo page: turn a '<image path>,<score>' CSV into an HTML gallery sorted by descending
score, PIC_LIMIT (6) images a row, each followed by its score (AVAS demo/visualization_csv.py).
Image `src` paths are written relative to the page (upstream wrote the CSV's absolute paths, which
break when the folder moves).

    python visualization_csv.py [--csv_file align_普陀山图片_with_MKG.csv] [--out_dir html_align_with_mkg]
"""
import os
import sys
if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import argparse
import time
from xml.etree import ElementTree as ET

from common.atomic import atomic_open
from common.errors import InputError, cli_main
from common.safeio import check_writable, cleanup_stale_tmp, iter_text_lines


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--csv_file', default='align_普陀山图片_with_MKG.csv')
    p.add_argument('--pic_limit', default=6, type=int, help='PIC_LIMIT: images per table row')
    p.add_argument('--out_dir', default='html_align_with_mkg')
    p.add_argument('--out_html', default=None, help="default <out_dir>/<csv stem>_<HH-MM-SS>.html")
    return p


def read_scores(path):
    lines = []
    for lineno, line in enumerate(iter_text_lines(path, 'score CSV'), 1):
        line = line.strip()
        if len(line) < 2:
            continue
        fields = line.split(',')
        if len(fields) != 2:
            raise InputError('%s:%d: expected "<image path>,<score>"' % (path, lineno))
        try:
            lines.append([fields[0], float(fields[1])])
        except ValueError:
            raise InputError('%s:%d: score %r is not a number' % (path, lineno, fields[1])) from None
    if not lines:
        raise InputError('%s: no "<image path>,<score>" rows; run align_model_test_with_mkg.py first' % path)
    lines.sort(key=lambda x: -x[1])
    return lines


def build_html(lines, pic_limit=6, page_dir=None):
    """Upstream's table; with page_dir, each src is the image path relative to that folder."""
    html = ET.Element('html')
    body = ET.SubElement(html, 'body')
    table = ET.SubElement(body, 'table', attrib={'border': '2', 'width': '100%'})
    for start in range(0, len(lines), pic_limit):
        tr = ET.SubElement(table, 'tr')
        for path, score in lines[start:start + pic_limit]:
            div = ET.SubElement(ET.SubElement(tr, 'td'), 'div', attrib={'style': 'height: 96px; overflow-y:scroll'})
            src = os.path.relpath(os.path.abspath(path), page_dir).replace(os.sep, '/') if page_dir else path
            ET.SubElement(div, 'img', attrib={'class': 'imagecontainer', 'width': '96px', 'src': src})
            ET.SubElement(tr, 'td').text = str(score)
    return ET.ElementTree(html)


def main(argv=None):
    args = get_parser().parse_args(argv)
    out = args.out_html
    if out is None:
        stem = os.path.basename(args.csv_file).split('.')[0]
        out = os.path.join(args.out_dir, stem + '_{}.html'.format(time.strftime("%H-%M-%S", time.localtime())))
    cleanup_stale_tmp(out)
    check_writable(out, 'HTML page')
    lines = read_scores(args.csv_file)
    print(len(lines))
    with atomic_open(out, 'wb') as f:
        build_html(lines, args.pic_limit, os.path.dirname(os.path.abspath(out))).write(f)
    print('wrote', out)
    return out


if __name__ == '__main__':
    cli_main(main)
