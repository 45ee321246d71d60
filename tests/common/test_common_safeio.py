"""common.safeio: untrusted files are read without pickles and every fault names the file (and line);
outputs are written atomically; stale temp files are removed; non-finite values stop a run."""
import json
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from common import safeio
from common.errors import InputError
from common.safeio import BadImageError, NonFiniteError


class _Boom:
    def __reduce__(self):
        return (os.system, ('touch /tmp/common_safeio_pwned',))


def test_load_npy_round_trip_shape_and_mmap(tmp_path):
    path = tmp_path / 'f.npy'
    safeio.save_npy_atomic(path, np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    arr = safeio.load_npy(path, mmap_mode='r', shape=(None, 3, 4), ndim=3, dtype=np.float32)
    assert isinstance(arr, np.memmap) and arr[1, 2, 3] == 23.0
    with pytest.raises(InputError, match=r'f.npy: features array has shape \(2, 3, 4\), expected \(N, 3, 5\)'):
        safeio.load_npy(path, shape=(None, 3, 5), what='features')
    with pytest.raises(InputError, match=r'expected 2 dimensions'):
        safeio.load_npy(path, ndim=2)
    with pytest.raises(InputError, match='dtype float32, expected int64'):
        safeio.load_npy(path, dtype=np.int64)


def test_load_npy_refuses_object_arrays_without_running_them(tmp_path):
    path = tmp_path / 'evil.npy'
    np.save(path, np.array([_Boom()], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match='evil.npy: holds Python objects'):
        safeio.load_npy(path)
    assert not os.path.exists('/tmp/common_safeio_pwned')


@pytest.mark.parametrize('damage, message', [
    (lambda b: b[:len(b) - 40], r'truncated \(\d+ of 928 bytes\)'),
    (lambda b: b'', r'not a .npy array file'),
    (lambda b: b'garbage' * 20, r'not a .npy array file'),
])
def test_load_npy_damaged_files_name_the_file(tmp_path, damage, message):
    path = tmp_path / 'd.npy'
    np.save(path, np.zeros(100))
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(InputError, match=str(path) + ': ' + message):
        safeio.load_npy(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputError, match='nope.npy: vocab file not found'):
        safeio.load_npy(tmp_path / 'nope.npy', what='vocab')
    with pytest.raises(InputError, match='is a folder'):
        safeio.read_text_lines(tmp_path)


def test_load_npz_plain_arrays_and_refusals(tmp_path):
    good = tmp_path / 'g.npz'
    safeio.save_npz_atomic(good, a=np.arange(3), b=np.eye(2))
    data = safeio.load_npz(good)
    assert sorted(data) == ['a', 'b'] and data['a'].tolist() == [0, 1, 2] and data['b'][1, 1] == 1.0
    evil = tmp_path / 'o.npz'
    np.savez(evil, a=np.array([_Boom()], dtype=object))
    with pytest.raises(InputError, match='o.npz: holds Python objects'):
        safeio.load_npz(evil)
    pickled = tmp_path / 'p.npz'  # a bare pickle under an .npz name: never unpickled
    pickled.write_bytes(pickle.dumps(_Boom()))
    with pytest.raises(InputError, match='p.npz: not an .npz archive'):
        safeio.load_npz(pickled)
    truncated = tmp_path / 't.npz'
    truncated.write_bytes(good.read_bytes()[:100])
    with pytest.raises(InputError, match='t.npz: not an .npz archive'):
        safeio.load_npz(truncated)
    assert not os.path.exists('/tmp/common_safeio_pwned')


def test_text_and_csv_name_file_and_line(tmp_path):
    path = tmp_path / 'caps.txt'
    path.write_bytes('first\r\nsecond ü\n'.encode('utf-8') + b'bad \xff byte\n')
    with pytest.raises(InputError, match=r'caps.txt:3: not UTF-8 text .*re-save the file as UTF-8'):
        safeio.read_text_lines(path)
    lines = safeio.iter_text_lines(path)  # lazily: the lines before the bad one are read
    assert [next(lines), next(lines)] == ['first', 'second ü']
    csv_path = tmp_path / 't.csv'
    csv_path.write_bytes(b'a,b\r\n"multi\r\nline",2\nx,\xe6\x99\xae\n')
    assert safeio.read_csv_rows(csv_path) == [['a', 'b'], ['multi\r\nline', '2'], ['x', '普']]
    csv_path.write_bytes(b'a,b\n"open,2\n')
    with pytest.raises(InputError, match=r't.csv:2: malformed CSV'):
        safeio.read_csv_rows(csv_path, strict=True)


def test_check_writable(tmp_path):
    assert safeio.check_writable(tmp_path / 'new' / 'deep' / 'out.json') == str(tmp_path / 'new' / 'deep' / 'out.json')
    assert os.path.isdir(tmp_path / 'new' / 'deep') and os.listdir(tmp_path / 'new' / 'deep') == []
    with pytest.raises(InputError, match='is a folder; the --out_json must be a file path'):
        safeio.check_writable(tmp_path, '--out_json')
    (tmp_path / 'file').write_text('x')
    with pytest.raises(InputError, match='cannot write the output there'):
        safeio.check_writable(tmp_path / 'file' / 'sub' / 'out.json')
    with pytest.raises(InputError, match='exists and is not a folder'):
        safeio.check_writable_dir(tmp_path / 'file')
    if os.getuid() != 0:  # root writes anywhere
        ro = tmp_path / 'ro'
        ro.mkdir()
        ro.chmod(0o500)
        with pytest.raises(InputError, match='cannot write'):
            safeio.check_writable(ro / 'x')


def test_cleanup_stale_tmp_removes_only_leftovers(tmp_path):
    target = tmp_path / 'model.pth'
    target.write_text('keep')
    for name in ('.model.pth.abc123.tmp', '.model.pth.zz.tmp', '.other.json.q.tmp', 'model.pth.tmp', '.model.pthx.tmp'):
        (tmp_path / name).write_text('partial')
    removed = safeio.cleanup_stale_tmp(target)
    assert sorted(os.path.basename(p) for p in removed) == ['.model.pth.abc123.tmp', '.model.pth.zz.tmp']
    removed = safeio.cleanup_stale_tmp(tmp_path)
    assert sorted(os.path.basename(p) for p in removed) == ['.model.pthx.tmp', '.other.json.q.tmp']
    assert sorted(os.listdir(tmp_path)) == ['model.pth', 'model.pth.tmp']


def test_check_finite_and_all_finite():
    assert safeio.check_finite(torch.tensor(2.5), 'epoch 0') == 2.5
    assert safeio.check_finite(np.float32(1.0), 'x') == 1.0
    for bad in (float('nan'), float('inf'), torch.tensor(float('-inf'))):
        with pytest.raises(NonFiniteError, match=r'non-finite loss \(-?(nan|inf)\) at epoch 3 step 17; the run stops'):
            safeio.check_finite(bad, 'epoch 3 step 17')
    assert issubclass(NonFiniteError, InputError)
    good = {'w': torch.ones(2), 'n': torch.tensor(3), 'inner': {'b': torch.zeros(1)}}
    assert safeio.all_finite(good)
    good['inner']['b'] = torch.tensor([float('nan')])
    assert not safeio.all_finite(good)


def test_fingerprint_is_order_sensitive_sha256():
    a = safeio.fingerprint(['<pad>', 'dog', 'cat'])
    assert len(a) == 64 and a == safeio.fingerprint(['<pad>', 'dog', 'cat'])
    assert a != safeio.fingerprint(['<pad>', 'cat', 'dog'])
    assert safeio.fingerprint([]) == 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'


def test_images_decode_fully_or_raise_naming_the_file(tmp_path):
    good = tmp_path / 'g.png'
    Image.new('L', (7, 5), 128).save(good)
    img = safeio.open_image(good)
    assert img.mode == 'RGB' and img.size == (7, 5) and img.getpixel((0, 0)) == (128, 128, 128)
    jpg = tmp_path / 'c.jpg'
    Image.new('RGB', (64, 64), 'red').save(jpg)
    jpg.write_bytes(jpg.read_bytes()[:200])  # truncated JPEG: only a full decode notices
    with pytest.raises(BadImageError, match='c.jpg: corrupt or unreadable image'):
        safeio.verify_image(jpg)
    with pytest.raises(BadImageError, match='none.jpg: photo file not found'):
        safeio.open_image(tmp_path / 'none.jpg', 'photo')


def test_atomic_writers(tmp_path):
    safeio.write_json_atomic(tmp_path / 'r.json', {'rsum': 1.5})
    assert json.loads((tmp_path / 'r.json').read_text()) == {'rsum': 1.5}
    assert (tmp_path / 'r.json').read_text().endswith('}\n')
    safeio.write_text_atomic(tmp_path / 't.txt', 'héllo')
    assert (tmp_path / 't.txt').read_text(encoding='utf-8') == 'héllo'
    safeio.save_npy_atomic(tmp_path / 'a.npy', [1, 2])
    assert np.load(tmp_path / 'a.npy').tolist() == [1, 2]
    assert [p for p in os.listdir(tmp_path) if p.endswith('.tmp')] == []
