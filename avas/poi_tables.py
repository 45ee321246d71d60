"""The POI side tables of the ranking model: reading them safely, writing them in a plain format, and
building them from an ALIGN.

Upstream (model_local.py:53-63) ships them as `.npy` files holding a pickled dict
({POI name: [n0, n1, n2]} or {POI name: 512-d vector}) and loads them with allow_pickle=True, so
a crafted file runs code. Here:
* tables this repository writes are plain `.npz` files (same stem): `names` (unicode) and
  `values` (float32 (N, D) vectors or int64 (N, 3) counts) -- no pickle at all;
* upstream's object `.npy` tables are unpickled only through common.checkpoint.load_pickle's
  allow-list (dict/list/str/numbers/numpy arrays): anything else is refused and nothing runs;
* `python avas/poi_tables.py --convert DIR` writes the `.npz` twin of every upstream table in DIR.
The port's building recipe (upstream's is not public): the name vector is the ALIGN text
embedding of the POI name; the image vector is the mean ALIGN image embedding of its images.
"""
import os
import sys
if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import tempfile

import numpy as np

from common.errors import InputError, cli_main
from common.safeio import load_npz, save_npz_atomic

# looked up in --poi_tables under upstream's file names (model_local.py:53-63)
PIC_NUM_TABLE = 'temp_dataset_item_pois_relation_1129_poi_2_pic_num.npy'
IMG_VEC_TABLE = 'temp_dataset_item_pois_relation_0110_imgs_avg10_vector.npy'
IMG_VEC_TABLE_WO_NORM = 'temp_dataset_item_pois_relation_0110_imgs_avg_10vector_wo_norm.npy'
NAME_VEC_TABLE = 'temp_dataset_item_pois_relation_0110_poi_name_vector.npy'
VECTOR_DIM = 512


def plain_path(path):
    """The .npz twin of an upstream table name."""
    return os.path.splitext(path)[0] + '.npz'


def _missing(path):
    return InputError(
        '%s: POI side table not found in --poi_tables (neither .npz nor .npy). %s = avas/data/%s; the 0110 '
        'vector tables are files of github.com/youyuge34/AutoImageSelection (the _wo_norm one was never '
        'published); or build tables with avas.poi_tables.build_poi_vector_tables.'
        % (path, PIC_NUM_TABLE, PIC_NUM_TABLE))


def read_upstream_table(path):
    """An upstream object .npy (a pickled dict) through the allow-listed unpickler: numpy's own
    reader would run any code the pickle carries."""
    try:
        with open(path, 'rb') as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            _, _, dtype = read_header(f)
            payload = f.read()
    except (ValueError, OSError, EOFError) as err:
        raise InputError('%s: not a .npy file (%s); regenerate it' % (path, err)) from None
    if not dtype.hasobject:
        raise InputError('%s: holds a plain %s array, not a POI table (a dict of POI name -> values)' % (path, dtype))
    # common.checkpoint loads torch: imported here so that the converter's --help stays fast
    from common.checkpoint import CheckpointError, load_pickle
    # load_pickle reads a path: the pickle that follows the .npy header goes to a private temp file
    with tempfile.NamedTemporaryFile(suffix='.pkl') as tmp:
        tmp.write(payload)
        tmp.flush()
        try:
            obj = load_pickle(tmp.name)
        except CheckpointError as err:
            raise InputError('%s: %s' % (path, str(err).split(': ', 1)[-1])) from None
    table = obj.item() if isinstance(obj, np.ndarray) and obj.shape == () else obj
    if not isinstance(table, dict):
        raise InputError('%s: expected a pickled dict of POI name -> values, found %s' % (path, type(table).__name__))
    return table


def _check_table(path, table, width):
    for name, value in table.items():
        if not isinstance(name, str):
            raise InputError('%s: key %r is not a POI name (str)' % (path, name))
        shape = np.shape(value)
        if shape != (width,):
            raise InputError('%s: entry %r has shape %s, expected (%d,); was the table made for another model?'
                             % (path, name, shape, width))
        if not np.all(np.isfinite(np.asarray(value, dtype=np.float64))):
            raise InputError('%s: entry %r holds NaN/inf values; rebuild the table' % (path, name))
    return table


def load_table(path, width):
    """{POI name: values} from `<stem>.npz` (plain) or upstream's `<stem>.npy`; width = 3 (counts) or
    512 (vectors). Wrong shapes and non-finite values name the file and the POI."""
    npz = plain_path(path)
    if os.path.isfile(npz):
        arrays = load_npz(npz)
        if set(arrays) != {'names', 'values'} or len(arrays['names']) != len(arrays['values']):
            raise InputError('%s: expected arrays "names" and "values" of equal length, found %s'
                             % (npz, {k: v.shape for k, v in arrays.items()}))
        table = {str(n): v for n, v in zip(arrays['names'], arrays['values'])}
        return _check_table(npz, table, width)
    if not os.path.isfile(path):
        raise _missing(path)
    return _check_table(path, read_upstream_table(path), width)


def load_poi_tables(poi_dir, use_norm_vector=1):
    """(pic_num, img_vectors, name_vectors) as model_local.Config loads them."""
    if not os.path.isdir(poi_dir):
        raise InputError('%s: --poi_tables folder not found' % poi_dir)
    img_table = IMG_VEC_TABLE if use_norm_vector else IMG_VEC_TABLE_WO_NORM
    return (load_table(os.path.join(poi_dir, PIC_NUM_TABLE), 3),
            load_table(os.path.join(poi_dir, img_table), VECTOR_DIM),
            load_table(os.path.join(poi_dir, NAME_VEC_TABLE), VECTOR_DIM))


def save_table(path, table, dtype=np.float32):
    """Write {POI name: values} as the plain `.npz` twin of `path` (atomically); returns its path."""
    names = list(table)
    values = np.stack([np.asarray(table[n], dtype=dtype) for n in names]) if names else np.zeros((0, 0), dtype)
    out = plain_path(path)
    save_npz_atomic(out, names=np.array(names, dtype=str), values=values)
    return out


def build_poi_vector_tables(model, poi_images, out_dir, device, use_norm=1):
    """poi_images: {poi name: [image paths]} -> writes the image and name vector tables (.npz).
    Unreadable images are skipped and reported; a POI left without images gets no image vector
    (a zero vector at lookup, as upstream gives any POI missing from its table)."""
    # heavy imports only for building: reading/converting tables and --help stay light
    import torch
    from avas.align_model import encode_texts
    from avas.formats import check_images, load_image
    model.eval()
    names = list(poi_images)
    with torch.no_grad():
        name_vecs = encode_texts(model, names, device, norm=bool(use_norm)).cpu().numpy()
        paths, _ = check_images(sorted({p for ps in poi_images.values() for p in ps}), what='POI images')
        embedded = {}
        for start in range(0, len(paths), 16):  # each distinct image is embedded once
            chunk = paths[start:start + 16]
            imgs = torch.from_numpy(np.stack([load_image(p) for p in chunk])).to(device)
            embedded.update(zip(chunk, model.encode_image(imgs, norm=bool(use_norm)).cpu()))
    img_table = {name: torch.stack([embedded[p] for p in poi_images[name] if p in embedded]).mean(0).numpy()
                 for name in names if any(p in embedded for p in poi_images[name])}
    os.makedirs(out_dir, exist_ok=True)
    save_table(os.path.join(out_dir, IMG_VEC_TABLE if use_norm else IMG_VEC_TABLE_WO_NORM), img_table)
    save_table(os.path.join(out_dir, NAME_VEC_TABLE), dict(zip(names, name_vecs)))
    return img_table


def convert_folder(folder):
    """Write the plain .npz twin of every upstream table found in `folder`; returns the written paths."""
    written = []
    for name, width, dtype in ((PIC_NUM_TABLE, 3, np.int64), (IMG_VEC_TABLE, VECTOR_DIM, np.float32),
                               (IMG_VEC_TABLE_WO_NORM, VECTOR_DIM, np.float32),
                               (NAME_VEC_TABLE, VECTOR_DIM, np.float32)):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            written.append(save_table(path, _check_table(path, read_upstream_table(path), width), dtype))
            print('wrote', written[-1])
    if not written:
        raise InputError('%s: no upstream POI tables (.npy) found to convert' % folder)
    return written


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--convert', required=True, metavar='DIR',
                   help='folder with upstream .npy tables; writes their plain .npz twins beside them')
    args = p.parse_args(argv)
    return convert_folder(args.convert)


if __name__ == '__main__':
    cli_main(main)
