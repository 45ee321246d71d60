"""download_images.py against a local HTTP server (127.0.0.1 only) serving the shared photos:
recall and ranking layouts, retries of a flaky URL, failure report, resume skips existing files."""
import http.server
import os
import threading

import pytest

from avas.data import RECORD_SEP, read_ranking_lines
from avas.download_images import main
from tests.avas.avas_testlib import PHOTOS, VAL_CSV

PHOTO_NAMES = sorted(os.listdir(PHOTOS))


@pytest.fixture()
def server():
    hits = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            name = self.path.rsplit('/', 1)[-1]
            hits[name] = hits.get(name, 0) + 1
            if name.startswith('flaky') and hits[name] == 1:
                self.send_error(503)
                return
            name = name.replace('flaky_', '')
            if name == 'page.jpg':
                body = b'<html>not an image</html>'
            elif name in PHOTO_NAMES:
                body = open(os.path.join(PHOTOS, name), 'rb').read()
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield 'http://127.0.0.1:%d' % httpd.server_address[1], hits
    httpd.shutdown()
    httpd.server_close()


def test_recall_layout_retries_report_and_resume(server, tmp_path):
    base, hits = server
    rows = ['10060,北海海底世界,%s/img/%s,1,0,0,0' % (base, PHOTO_NAMES[0]),
            '10060,北海海底世界,%s/img/flaky_%s,2,0,0,0' % (base, PHOTO_NAMES[1]),
            '10061,普陀山,%s/img/missing.jpg,1,0,0,0' % base,
            '10061,普陀山,%s/img/page.jpg,2,0,0,0' % base]
    csv = tmp_path / 'recall.csv'
    csv.write_text('\n'.join(rows) + '\n', encoding='utf-8')
    out = tmp_path / 'imgs'
    argv = ['--csv', str(csv), '--out_dir', str(out), '--workers', '4', '--retries', '2', '--backoff', '0.01']
    result = main(argv)
    assert result == {'total': 4, 'fetched': 2, 'failed': 2, 'report': str(out / 'download_failures.csv')}
    assert sorted(os.listdir(out)) == ['10060_1.jpg', '10060_2.jpg', 'download_failures.csv']
    assert (out / '10060_1.jpg').read_bytes() == open(os.path.join(PHOTOS, PHOTO_NAMES[0]), 'rb').read()
    assert hits['flaky_' + PHOTO_NAMES[1]] == 2  # 503 once, then fetched
    report = (out / 'download_failures.csv').read_text().splitlines()
    assert report[0] == 'url,destination,error' and len(report) == 3
    assert any('missing.jpg' in l and '404' in l for l in report)
    assert any('page.jpg' in l and 'UnidentifiedImageError' in l for l in report)
    before = dict(hits)
    again = main(argv)  # resumable: only the two failures are tried again
    assert again['fetched'] == 0 and again['failed'] == 2
    assert hits[PHOTO_NAMES[0]] == before[PHOTO_NAMES[0]]


def test_ranking_layout_uses_oss_urls_basenames(server, tmp_path):
    base, _ = server
    lines = []
    for k, (_, line) in enumerate(read_ranking_lines(VAL_CSV)[:2]):
        f = line.split(RECORD_SEP)
        f[7] = '%s/youyi/a/%s' % (base, PHOTO_NAMES[2 * k])
        f[8] = '%s/youyi/b/%s' % (base, PHOTO_NAMES[2 * k + 1])
        lines.append(RECORD_SEP.join(f))
    csv = tmp_path / 'val.csv'
    csv.write_text('\n'.join(lines), encoding='utf-8')
    result = main(['--csv', str(csv), '--out_dir', str(tmp_path / 'oss'), '--workers', '2'])
    assert result['fetched'] == 4 and result['failed'] == 0
    assert sorted(n for n in os.listdir(tmp_path / 'oss') if n.endswith('.jpg')) == sorted(PHOTO_NAMES[:4])
